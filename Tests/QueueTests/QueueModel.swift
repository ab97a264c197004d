import Foundation
import GPSModel
import GPSTestSupport
import Queue
import SwiftProtobuf
import Testing

/// The reference model: what the queue must do, written as plainly as possible and independently
/// of the reducer.
struct QueueModel {
  struct ModelRun {
    var id: RunID
    var state: RunState
    var token: UInt64?
    var deadline: Timestamp?
    var start: Timestamp
    var priority: Int32
    var order: UInt64
    var deployment: String
    var tags: [String]
    var requeues: UInt32 = 0
    var maxRequeues: UInt32
    var step = ""
    var attempt: UInt32 = 0
    /// An attempt started and has no outcome yet.
    var open = false
  }

  enum Outcome: Equatable {
    case ok(RunState)
    case refused(QueueError.Code)
  }

  var runs: [RunID: ModelRun] = [:]
  var keys: [String: RunID] = [:]
  let limits: ConcurrencyLimits
  let lease: Duration
  let lateAfter: Duration
  let requeueDelay: Duration

  func leased(deployment: String) -> Int { runs.values.filter { $0.token != nil && $0.deployment == deployment }.count }
  func leased(tag: String) -> Int { runs.values.filter { $0.token != nil && $0.tags.contains(tag) }.count }

  func expectedClaim(now: Timestamp) -> RunID? {
    let ready = runs.values.filter {
      $0.token == nil && [.scheduled, .late, .awaitingRetry].contains($0.state) && $0.start <= now
    }.sorted {
      ($0.priority, $1.start.micros, $1.order) > ($1.priority, $0.start.micros, $0.order)
    }
    return ready.first { run in
      if let limit = limits.deployments[run.deployment], leased(deployment: run.deployment) >= limit { return false }
      for tag in run.tags {
        if let limit = limits.tags[tag], leased(tag: tag) >= limit { return false }
      }
      return true
    }?.id
  }

  mutating func claimed(_ id: RunID, token: UInt64, now: Timestamp) {
    runs[id]!.state = .pending
    runs[id]!.open = false
    runs[id]!.token = token
    runs[id]!.deadline = now + lease
  }

  /// The outcome of a scheduler's report, applied to the model when it is allowed.
  mutating func report(_ id: RunID, token: UInt64, _ event: RunEvent.OneOf_Kind) -> Outcome {
    var run = runs[id]!
    guard run.token == token else { return .refused(.leaseLost) }
    let s = run.state
    let illegal = Outcome.refused(.illegalTransition)
    // A report sent again after its answer was lost: the run is where it left it; answered as is.
    let executing: [RunState] = [.running, .retrying, .cancelling]
    switch event {
    case .started where (s == .running || s == .cancelling) && run.step.isEmpty && run.attempt == 0:
      return .ok(s)
    case .attemptStarted(let a) where a.step == run.step && a.attempt == run.attempt && run.open:
      return .ok(s)
    case .attemptSucceeded(let a)
    where executing.contains(s) && a.step == run.step && a.attempt == run.attempt && !run.open:
      return .ok(s)
    case .attemptFailed(let a)
    where executing.contains(s) && a.step == run.step && a.attempt == run.attempt && !run.open:
      return .ok(s)
    case .retryScheduled(let r) where s == .awaitingRetry && r.step == run.step && r.nextAttempt == run.attempt + 1:
      return .ok(s)
    default: break
    }
    switch event {
    case .started:
      guard s == .pending else { return illegal }
      run.state = .running
      run.step = ""
      run.attempt = 0
    case .attemptStarted(let a):
      if (s == .running || s == .retrying) && a.attempt == 1 {
        run.state = .running
      } else if [.running, .retrying, .awaitingRetry].contains(s) && a.step == run.step && a.attempt == run.attempt + 1
      {
        run.state = .retrying
      } else {
        return illegal
      }
      run.step = a.step
      run.attempt = a.attempt
      run.open = true
    case .attemptSucceeded(let a):
      guard [.running, .retrying, .cancelling].contains(s), a.step == run.step, a.attempt == run.attempt, run.open
      else {
        return illegal
      }
      run.open = false
    case .attemptFailed(let a):
      guard [.running, .retrying, .cancelling].contains(s), a.step == run.step, a.attempt == run.attempt, run.open
      else {
        return illegal
      }
      run.open = false
    case .retryScheduled(let r):
      guard s == .running || s == .retrying, r.step == run.step, r.nextAttempt == run.attempt + 1 else {
        return illegal
      }
      run.state = .awaitingRetry
      run.start = Timestamp(micros: r.retryAtMicros)
    case .completed:
      guard [.running, .retrying, .cancelling].contains(s) else { return illegal }
      run.state = .completed
      run.token = nil
    case .failed, .timedOut:
      guard [.pending, .running, .retrying, .awaitingRetry, .cancelling].contains(s) else { return illegal }
      if case .failed = event { run.state = .failed } else { run.state = .timedOut }
      run.token = nil
    case .cancelled:
      guard s == .cancelling else { return illegal }
      run.state = .cancelled
      run.token = nil
    case .crashed:
      run.state = .crashed
      run.token = nil
    default:
      return .refused(.invalidArgument)
    }
    if run.token == nil { run.deadline = nil }
    if ![.running, .retrying, .cancelling].contains(run.state) { run.open = false }
    runs[id] = run
    return .ok(run.state)
  }

  mutating func cancel(_ id: RunID) -> Outcome {
    var run = runs[id]!
    switch run.state {
    case .cancelling: return .ok(.cancelling)
    case _ where run.token != nil: run.state = .cancelling
    case .scheduled, .late, .awaitingRetry: run.state = .cancelled; run.open = false
    default: return .refused(.illegalTransition)
    }
    runs[id] = run
    return .ok(run.state)
  }

  mutating func retry(_ id: RunID, now: Timestamp) -> Outcome {
    guard [.failed, .crashed, .timedOut, .cancelled].contains(runs[id]!.state) else {
      return .refused(.illegalTransition)
    }
    runs[id]!.state = .scheduled
    runs[id]!.open = false
    runs[id]!.start = now
    runs[id]!.step = ""
    runs[id]!.attempt = 0
    return .ok(.scheduled)
  }

  mutating func tick(now: Timestamp) -> (late: Set<RunID>, expired: Set<RunID>) {
    var late = Set<RunID>()
    var expired = Set<RunID>()
    for (id, run) in runs {
      if run.state == .scheduled, run.token == nil, run.start + lateAfter <= now {
        runs[id]!.state = .late
        runs[id]!.open = false
        late.insert(id)
      }
      if run.token != nil, let deadline = run.deadline, deadline <= now {
        expired.insert(id)
        var next = run
        next.token = nil
        next.deadline = nil
        if run.state == .cancelling {
          next.state = .cancelled
          next.open = false
        } else if run.requeues < run.maxRequeues {
          next.state = .awaitingRetry
          next.open = false
          next.requeues += 1
          next.start = now + requeueDelay
          next.step = ""
          next.attempt = 0
        } else {
          next.state = .crashed
          next.open = false
        }
        runs[id] = next
      }
    }
    return (late, expired)
  }
}
/// What a queue holds, wherever its runs are: every run in enqueue order and the queue-wide state.
struct LogicalState: Equatable {
  var runs: [Run]
  var counts: StateCounts
  var lastSequence: UInt64
  var lastTime: Timestamp
  var deployments: [String: [DeploymentVersion]]
  var slotsByDeployment: [String: Int]
  var slotsByTag: [String: Int]
  var activeByDeployment: [String: Int]

  init(_ state: QueueState) {
    runs = state.runs.values
    counts = state.counts
    lastSequence = state.lastSequence
    lastTime = state.lastTime
    deployments = state.deployments
    slotsByDeployment = state.slotsByDeployment
    slotsByTag = state.slotsByTag
    activeByDeployment = state.activeByDeployment
  }

  init(_ queue: RunQueue) throws {
    self.init(queue.state)
    runs = try queue.runs(matching: RunQuery(), limit: 1 << 30).runs.reversed()
  }
}
