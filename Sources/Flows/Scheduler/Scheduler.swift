import Crypto
public import Foundation
public import GPSModel
import GRPCCore
public import Logging
public import RPC
import SwiftProtobuf
import Synchronization

/// Options of a ``Scheduler``.
public struct SchedulerOptions: Sendable {
  /// Names the scheduler in claims and leases.
  public var id: String
  /// Runs executed at once.
  public var concurrency: Int
  /// How often leases are renewed at most; never less often than a third of the leases' length
  /// as the queue grants them.
  public var heartbeatInterval: Duration
  /// The longest an idle scheduler waits before looking again; new work wakes it at once.
  public var idleWait: Duration

  public init(
    id: String = "scheduler-\(ProcessInfo.processInfo.processIdentifier)-\(UInt16.random(in: 0...UInt16.max))",
    concurrency: Int = 16, heartbeatInterval: Duration = .seconds(5), idleWait: Duration = .seconds(1)
  ) {
    self.id = id
    self.concurrency = max(1, concurrency)
    self.heartbeatInterval = heartbeatInterval
    self.idleWait = idleWait
  }
}

/// Executes runs: claims ready runs under a lease, runs up to `concurrency` of them at once, renews
/// their leases, and records every step attempt as events. Wakes on enqueue; honours cancellation
/// (in-flight calls are cancelled), step and run timeouts, and lease loss (it stops work it no
/// longer owns, without reporting).
public final class Scheduler: Sendable {
  public let options: SchedulerOptions
  let queue: any SchedulerQueue
  /// Every time the scheduler reads and every wait it makes: timeouts, backoffs, heartbeats,
  /// attempt durations and the times it reports.
  let clock: any WallClock
  let registry: DeploymentRegistry
  let dependencies: Dependencies
  /// Registered versions, as runs enqueued against them are validated at start.
  let catalog = DeploymentCatalog()
  let versions = Mutex<[String: DeploymentVersion]>([:])
  /// The deployments claims ask for: those the scheduler serves.
  let served: Set<String>
  let logger: Logger
  let random: @Sendable () -> Double
  let active = Mutex<[RunID: ActiveRun]>([:])
  let capacity = WakeSignal()
  let timers: RunTimer
  let cache = Mutex<[String: [UInt8]]>([:])
  let draining = Atomic<Bool>(false)
  /// The length of the leases the queue grants, learnt from claims: heartbeats come at least three
  /// times per lease.
  let leaseLength = Mutex<Duration?>(nil)
  /// Wakes the claim loop: new work in the queue, or ``stopClaiming()``.
  let work = WakeSignal()
  /// A busy scheduler claims runs this many at a time.
  static let claimBatch = 8

  /// The task executing a step attempt (or a retry's backoff). Only cancelled, under
  /// ``ActiveRun``'s lock, while that task is inside ``ActiveRun/attempt(timeout:_:)``: it is alive
  /// whenever it is used.
  struct TaskHandle: @unchecked Sendable {
    let task: UnsafeCurrentTask
  }

  /// A run being executed, and how to stop it.
  ///
  /// The run's task executes the steps itself; only each attempt (and each backoff) runs in a child
  /// task, which a stop request (cancel, lost lease, run timeout) or the attempt's own timeout
  /// cancels, so the call in flight is cancelled. The scheduler's one ``RunTimer`` enforces both
  /// timeouts: no timer per attempt.
  final class ActiveRun: Sendable {
    enum Stop: Sendable, Equatable { case cancelled, leaseLost, timedOut(String) }
    let lease: LeaseToken
    private struct State {
      var stop: Stop?
      /// The task of the attempt in progress: a stop or the attempt's timeout cancels it.
      var task: TaskHandle?
      var deadline: Timestamp?
      var timeout: Duration = .zero
      var attemptDeadline: Timestamp?
      var attemptTimedOut = false
      var finishing = false
    }
    private let state = Mutex(State())

    init(lease: LeaseToken) { self.lease = lease }

    var stop: Stop? { state.withLock { $0.stop } }

    /// The run's final events are being recorded: its lease ends with them, so heartbeats stop.
    var isFinishing: Bool { state.withLock { $0.finishing } }

    func markFinishing() { state.withLock { $0.finishing = true } }

    /// The earliest of the run's deadline and its attempt's, if it has either.
    var nextDeadline: Timestamp? {
      state.withLock { state in
        switch (state.deadline, state.attemptTimedOut ? nil : state.attemptDeadline) {
        case (let run?, let attempt?): min(run, attempt)
        case (let run?, nil): run
        case (nil, let attempt?): attempt
        case (nil, nil): nil
        }
      }
    }

    func setTimeout(_ timeout: Duration, now: Timestamp) {
      state.withLock {
        $0.timeout = timeout
        $0.deadline = now + timeout
      }
    }

    /// The first request wins; it cancels the attempt in progress, if any.
    func request(_ reason: Stop) {
      state.withLock { state in
        guard state.stop == nil else { return }
        state.stop = reason
        state.task?.task.cancel()
      }
    }

    /// Applies the deadlines that have passed by `now`: the run's ends it TimedOut, the attempt's
    /// cancels the attempt (which then fails with DEADLINE_EXCEEDED and may be retried).
    func expire(now: Timestamp) {
      let runTimeout = state.withLock { state -> Duration? in
        if let deadline = state.attemptDeadline, deadline <= now, !state.attemptTimedOut {
          state.attemptTimedOut = true
          state.task?.task.cancel()
        }
        guard let deadline = state.deadline, deadline <= now else { return nil }
        return state.timeout
      }
      if let runTimeout { request(.timedOut("the run exceeded its timeout of \(runTimeout)")) }
    }

    /// Runs `body` in a child task that a stop request cancels, and that `timeout` (enforced by the
    /// scheduler's timer, which `timers` is told of) cancels too; `timedOut` says whether it did.
    func attempt<T: Sendable>(
      timeout: Duration?, timers: RunTimer, _ body: @escaping @Sendable () async -> T
    ) async -> (value: T, timedOut: Bool) {
      if let timeout {
        let deadline = timers.clock.now() + timeout
        state.withLock {
          $0.attemptDeadline = deadline
          $0.attemptTimedOut = false
        }
        timers.signalIfEarlier(deadline)
      }
      let value = await withTaskGroup(of: T.self) { group in
        group.addTask { await self.cancellable(body) }
        return await group.next()!
      }
      let timedOut = state.withLock { state in
        defer {
          state.attemptDeadline = nil
          state.attemptTimedOut = false
        }
        return state.attemptTimedOut
      }
      return (value, timedOut)
    }

    /// Runs `body` (in the calling task) so that a stop request or the attempt's timeout cancels it.
    private func cancellable<T>(_ body: () async -> T) async -> T {
      withUnsafeCurrentTask { task in
        guard let task else { return }
        let handle = TaskHandle(task: task)
        state.withLock { state in
          state.task = handle
          if state.stop != nil || state.attemptTimedOut { handle.task.cancel() }
        }
      }
      let result = await body()
      // Cleared under the lock before the task can end: a later stop never touches it.
      state.withLock { $0.task = nil }
      return result
    }
  }

  /// - Parameter cachedResults: results of cacheable steps from earlier runs, e.g. from
  ///   ``cachedResults(in:registry:)``, so the cache outlives a restart.
  /// - Parameter clock: tests pass a ``ManualClock`` (the queue's own, for a local queue) so that
  ///   timeouts, backoffs and heartbeats happen when the test moves it.
  public init(
    queue: any SchedulerQueue, registry: DeploymentRegistry, dependencies: Dependencies = Dependencies(),
    options: SchedulerOptions = SchedulerOptions(), logger: Logger = Logger(label: "gps.scheduler"),
    cachedResults: [String: [UInt8]] = [:], clock: any WallClock = SystemClock(),
    random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
  ) {
    self.queue = queue
    self.clock = clock
    timers = RunTimer(clock: clock)
    self.registry = registry
    served = Set(registry.deployments.keys)
    self.dependencies = dependencies
    self.options = options
    self.logger = logger
    self.random = random
    cache.withLock { $0 = cachedResults }
  }

  /// Stops claiming: ``run()`` returns once the runs in flight have finished. Cancel its task to
  /// stop them too (their leases then expire and their crash policy applies).
  public func stopClaiming() {
    draining.store(true, ordering: .sequentiallyConsistent)
    capacity.signal()
    work.signal()
  }

  /// Runs executed right now.
  public var activeRuns: Int { active.withLock { $0.count } }

  /// Registers the scheduler's deployments with the queue, trying again every `idleWait` while the
  /// queue cannot be reached; a definition the queue refuses is thrown.
  func registerDeployments() async throws {
    let definitions = registry.definitions
    guard !definitions.isEmpty else { return }
    while !Task.isCancelled, !draining.load(ordering: .sequentiallyConsistent) {
      do {
        let versions = try await queue.register(definitions, worker: options.id)
        logger.info(
          "deployments registered",
          metadata: [
            "deployments": "\(zip(definitions, versions).map { "\($0.name) v\($1)" }.joined(separator: ", "))"
          ])
        return
      } catch let error as QueueError where error.code == .invalidArgument {
        throw error
      } catch let error as QueueError where error.code == .writerStopped || error.code == .closed {
        throw error
      } catch {
        logger.warning("could not register the deployments; trying again", metadata: ["error": "\(error)"])
        await work.wait(timeout: options.idleWait, clock: clock)
      }
    }
  }

  /// Runs until the task is cancelled, or until ``stopClaiming()`` and the runs in flight finish.
  public func run() async throws {
    try await registerDeployments()
    let cancelRequests = WakeSignal()
    queue.notifyWhenWorkArrives(work)
    queue.notifyOnCancelRequests(cancelRequests)
    logger.info("scheduler started", metadata: ["scheduler": "\(options.id)", "concurrency": "\(options.concurrency)"])
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { await self.heartbeats(cancelRequests: cancelRequests) }
      group.addTask { await self.enforceTimeouts() }
      var gathering = false
      while !Task.isCancelled {
        if draining.load(ordering: .sequentiallyConsistent) {
          if active.withLock({ $0.isEmpty }) { break }
          await capacity.wait()
          continue
        }
        let free = options.concurrency - active.withLock { $0.count }
        if free <= 0 {
          await capacity.wait()
          continue
        }
        // When busy, let a claim batch's worth of slots free up, for a millisecond at most, so one
        // claim commit takes several runs; an idle scheduler claims at once.
        if free < Self.claimBatch, free < options.concurrency, !gathering {
          gathering = true
          // Real time even under a test's clock: this batches commits, it is no deadline of a run.
          await capacity.wait(timeout: .milliseconds(1))
          continue
        }
        gathering = false
        let claims: [Claim]
        do {
          // Several at once when many are ready: one commit instead of one per run.
          claims = try await queue.claim(
            scheduler: options.id, limit: min(free, Self.claimBatch * 2), deployments: served)
        } catch let error as QueueError where error.code == .writerStopped || error.code == .closed {
          throw error
        } catch {
          logger.warning("claim failed", metadata: ["error": "\(error)"])
          await work.wait(timeout: options.idleWait, clock: clock)
          continue
        }
        if let first = claims.first {
          // In the queue's own time: the claim is the moment the run's Pending state began.
          let length = first.lease.expiresAt - first.run.stateSince
          let changed = leaseLength.withLock { known -> Bool in
            guard length > .zero else { return false }
            defer { known = length }
            guard let known else { return true }
            return length < known * 0.9 || length > known * 1.1
          }
          // The heartbeat loop may be waiting out a default interval longer than the lease: it
          // must renew within a third of it, starting now.
          if changed { cancelRequests.signal() }
        }
        for claim in claims {
          let run = ActiveRun(lease: claim.token)
          active.withLock { $0[claim.run.id] = run }
          group.addTask { await self.execute(claim, run) }
        }
        if !claims.isEmpty { continue }
        var wait = options.idleWait
        if let deadline = queue.nextDeadline {
          wait = min(wait, max(.milliseconds(1), deadline - clock.now()))
        }
        await work.wait(timeout: wait, clock: clock)
      }
      group.cancelAll()
    }
  }

  // MARK: Leases

  func heartbeats(cancelRequests: WakeSignal) async {
    while !Task.isCancelled {
      let lease = leaseLength.withLock { $0 }
      await cancelRequests.wait(
        timeout: lease.map { min(options.heartbeatInterval, $0 / 3) } ?? options.heartbeatInterval, clock: clock)
      let runs = active.withLock { Array($0.values) }.filter { !$0.isFinishing }
      guard !runs.isEmpty else { continue }
      // Every lease in one call: a round takes one round trip however many runs are in flight.
      let outcomes: [Result<HeartbeatReply, QueueError>]
      do {
        outcomes = try await queue.heartbeat(all: runs.map(\.lease))
      } catch {
        if !Task.isCancelled {
          logger.warning("heartbeat failed", metadata: ["runs": "\(runs.count)", "error": "\(error)"])
        }
        continue
      }
      for (run, outcome) in zip(runs, outcomes) {
        switch outcome {
        case .success(let reply):
          if reply.cancelRequested { run.request(.cancelled) }
        case .failure(let error):
          // A run that finished while its heartbeat was on the way gave its lease back by
          // finishing: nothing is wrong, and nothing is said.
          guard isActive(run), !run.isFinishing, !Task.isCancelled else { continue }
          if error.code == .leaseLost || error.code == .notFound {
            logger.warning(
              "lease lost; stopping the run", metadata: ["run": "\(run.lease.runID)", "error": "\(error.message)"])
            run.request(.leaseLost)
          } else {
            logger.warning("heartbeat failed", metadata: ["run": "\(run.lease.runID)", "error": "\(error)"])
          }
        }
      }
    }
  }

  /// Whether `run` is still one this scheduler executes.
  func isActive(_ run: ActiveRun) -> Bool {
    active.withLock { $0[run.lease.runID] === run }
  }

  /// Times out runs and attempts whose deadline has passed: one timer for all runs, woken when a
  /// run or attempt with an earlier deadline starts.
  func enforceTimeouts() async {
    while !Task.isCancelled {
      let now = clock.now()
      var next: Timestamp?
      for run in active.withLock({ Array($0.values) }) {
        run.expire(now: now)
        if let deadline = run.nextDeadline, deadline > now { next = min(next ?? deadline, deadline) }
      }
      await timers.wait(until: next)
    }
  }

  // MARK: Runs

  enum Outcome: Sendable {
    case completed(result: [UInt8], type: String, cached: Bool)
    case failed(String)
    case timedOut(String)
    case stopped(ActiveRun.Stop)

    /// For the log: the state and the reason, without the result's bytes.
    var summary: String {
      switch self {
      case .completed(let result, let type, let cached):
        "\(cached ? "Cached" : "Completed") (\(type), \(result.count) bytes)"
      case .failed(let reason): "Failed: \(reason)"
      case .timedOut(let reason): "TimedOut: \(reason)"
      case .stopped(.cancelled): "Cancelled"
      case .stopped(.timedOut(let reason)): "TimedOut: \(reason)"
      case .stopped(.leaseLost): "abandoned: lease lost"
      }
    }
  }

  /// What the steps produced: the outcome (nil when stopped from outside) and events not yet
  /// recorded, which go into the same commit as the run's final event.
  struct StepsResult: Sendable {
    var outcome: Outcome?
    var pending: [RunEvent.OneOf_Kind]
  }

  func execute(_ claim: Claim, _ run: ActiveRun) async {
    let lease = claim.token
    defer {
      let remaining = active.withLock { active in
        active[claim.run.id] = nil
        return active.count
      }
      // The claim loop needs to hear only of the first free slot, of a claim batch's worth, and of
      // the last run ending: not of every run.
      let free = options.concurrency - remaining
      if free == 1 || free == Self.claimBatch || remaining == 0 || draining.load(ordering: .relaxed) {
        capacity.signal()
      }
    }
    let started = clock.now()
    do {
      let deployment: Deployment
      let parameters: ValidatedParameters
      do {
        deployment = try registry.deployment(named: claim.run.deployment)
        parameters = try await validate(claim.run, of: deployment)
      } catch let error as FlowsError {
        try await queue.report(lease, [.failed(.with { $0.reason = "cannot start: \(error.message)" })])
        return
      }
      let timeout = claim.run.timeout > .zero ? claim.run.timeout : deployment.timeout
      if timeout > .zero {
        run.setTimeout(timeout, now: clock.now())
        timers.signalIfEarlier(run.nextDeadline)
      }
      let result = await steps(of: deployment.flow, claim: claim, parameters: parameters, run: run)
      let pending = result.pending
      let outcome: Outcome =
        switch (result.outcome, run.stop) {
        case (let finished?, _): finished
        case (nil, .timedOut(let reason)?): .timedOut(reason)
        case (nil, .cancelled?): .stopped(.cancelled)
        // Cancelled from outside (the scheduler is stopping) or the lease was lost: abandon.
        case (nil, .leaseLost?), (nil, nil): .stopped(.leaseLost)
        }
      let final: RunEvent.OneOf_Kind
      switch outcome {
      case .completed(let result, let type, let cached):
        final = .completed(
          .with {
            $0.result = Data(result)
            $0.resultType = type
            $0.cached = cached
          })
      case .failed(let reason): final = .failed(.with { $0.reason = reason })
      case .timedOut(let reason): final = .timedOut(.with { $0.reason = reason })
      // The queue keeps the user's reason from the request; this says who stopped it.
      case .stopped(.cancelled): final = .cancelled(.with { $0.reason = "stopped by scheduler \(options.id)" })
      case .stopped(.timedOut(let reason)): final = .timedOut(.with { $0.reason = reason })
      case .stopped(.leaseLost):
        logger.warning("run abandoned: its lease was lost", metadata: ["run": "\(claim.run.id)"])
        return
      }
      run.markFinishing()
      try await queue.report(lease, pending + [final])
      logger.info(
        "run finished",
        metadata: [
          "run": "\(claim.run.id)", "deployment": "\(claim.run.deployment)", "outcome": "\(outcome.summary)",
          "duration": "\(clock.now() - started)",
        ])
    } catch let error as QueueError where error.code == .leaseLost {
      logger.warning("run abandoned: \(error.message)", metadata: ["run": "\(claim.run.id)"])
    } catch {
      logger.error("could not record the run's progress", metadata: ["run": "\(claim.run.id)", "error": "\(error)"])
    }
  }

  /// Validates the run's parameters again, against the deployment version it was enqueued with
  /// (the scheduler's own definition for a run enqueued without one).
  func validate(_ run: Run, of deployment: Deployment) async throws -> ValidatedParameters {
    guard run.deploymentVersion != 0 else {
      return try deployment.parameters.validate(json: run.parametersJSON, pool: deployment.flow.descriptors)
    }
    let key = "\(run.deployment)\u{0}\(run.deploymentVersion)"
    var version = versions.withLock { $0[key] }
    if version == nil {
      guard let found = try await queue.deployment(named: run.deployment, version: run.deploymentVersion) else {
        throw FlowsError(
          code: .unknownDeployment,
          message: "the queue has no version \(run.deploymentVersion) of deployment \(run.deployment)")
      }
      versions.withLock { $0[key] = found }
      version = found
    }
    return try catalog.deployment(version!).validate(json: run.parametersJSON)
  }

  /// Runs the flow's steps in order with retries. Events are gathered and recorded in as few
  /// commits as possible, but an attempt's start is always durable before its calls go out.
  func steps(of flow: Flow, claim: Claim, parameters: ValidatedParameters, run: ActiveRun) async -> StepsResult {
    let lease = claim.token
    var results: [String: [UInt8]] = [:]
    var allCached = true
    var pending: [RunEvent.OneOf_Kind] = [.started(.init())]
    do {
      for step in flow.steps {
        var attempt: UInt32 = 1
        while true {
          // Stopped (cancelled, lease lost, run timed out) while recording: start nothing more.
          if run.stop != nil || Task.isCancelled { return StepsResult(outcome: nil, pending: pending) }
          let context = StepContext(
            runID: claim.run.id, deployment: claim.run.deployment, step: step.name, attempt: attempt,
            parameters: parameters, results: results, dependencies: dependencies, timeout: step.timeout)
          let digest = Array(SHA256.hash(data: try step.input(context)))
          pending.append(Events.attemptStarted(step.name, attempt, digest: digest))
          let cacheKey = "\(claim.run.deployment)/\(step.name)/\(digest.hexString)"
          if step.cacheResults, let cached = cache.withLock({ $0[cacheKey] }) {
            pending.append(Events.attemptSucceeded(step.name, attempt, result: cached, duration: .zero, cached: true))
            results[step.name] = cached
            break
          }
          try await queue.report(lease, pending)
          pending = []
          let start = clock.now()
          var (result, timedOut) = await run.attempt(timeout: step.timeout, timers: timers) {
            await Self.call(step, context)
          }
          let duration = clock.now() - start
          if timedOut, case .failure = result {
            result = .failure(RPCError(code: .deadlineExceeded, message: "the step timed out after \(step.timeout)"))
          }
          if run.stop != nil || Task.isCancelled {
            // Cancelled by a user: the interrupted attempt is part of the history. After a lost
            // lease nothing more is recorded: the run is no longer ours.
            if run.stop == .cancelled {
              let cancelled = RPCError(code: .cancelled, message: "the run was cancelled during the attempt")
              pending.append(Events.attemptFailed(step.name, attempt, cancelled, retryable: false, duration: duration))
            }
            return StepsResult(outcome: nil, pending: pending)
          }
          switch result {
          case .success(let output):
            pending.append(
              Events.attemptSucceeded(step.name, attempt, result: output, duration: duration, cached: false))
            if step.cacheResults { cache.withLock { $0[cacheKey] = output } }
            results[step.name] = output
            allCached = false
          case .failure(let error):
            let retryable = step.retry.retryableCodes.contains(error.code) && Int(attempt) < step.retry.maxAttempts
            pending.append(Events.attemptFailed(step.name, attempt, error, retryable: retryable, duration: duration))
            if retryable {
              let backoff = step.retry.backoff(after: Int(attempt), random: random())
              pending.append(
                .retryScheduled(
                  .with {
                    $0.step = step.name
                    $0.nextAttempt = attempt + 1
                    $0.retryAtMicros = (clock.now() + backoff).micros
                  }))
              try await queue.report(lease, pending)
              pending = []
              // A stop cuts the backoff short; the loop's first check then ends the run.
              _ = await run.attempt(timeout: nil, timers: timers) { [clock] in try? await clock.sleep(for: backoff) }
              attempt += 1
              continue
            }
            let reason =
              "step \(step.name) failed after \(attempt) attempt\(attempt == 1 ? "" : "s"): \(error.code.canonicalName): \(error.message)"
            return StepsResult(
              outcome: error.code == .deadlineExceeded ? .timedOut(reason) : .failed(reason), pending: pending)
          }
          break
        }
      }
    } catch is CancellationError {
      return StepsResult(outcome: nil, pending: pending)
    } catch let error as QueueError where error.code == .leaseLost {
      return StepsResult(outcome: .stopped(.leaseLost), pending: [])
    } catch let error as QueueError where error.code == .illegalTransition {
      // A cancel request can land between two steps: the next step may not start any more.
      if let reply = try? await queue.heartbeat(lease), reply.cancelRequested {
        return StepsResult(outcome: .stopped(.cancelled), pending: [])
      }
      return StepsResult(outcome: .failed("the scheduler could not record the run: \(error.message)"), pending: [])
    } catch {
      if Task.isCancelled { return StepsResult(outcome: nil, pending: pending) }
      return StepsResult(outcome: .failed("the scheduler could not record the run: \(error)"), pending: [])
    }
    guard let last = flow.steps.last, let result = results[last.name] else {
      return StepsResult(outcome: .failed("the flow has no result"), pending: pending)
    }
    return StepsResult(outcome: .completed(result: result, type: last.resultType, cached: allCached), pending: pending)
  }

  /// One call of a step's body; every error becomes a gRPC status.
  static func call(_ step: Step, _ context: StepContext) async -> Result<[UInt8], RPCError> {
    do {
      return .success(try await step.body(context))
    } catch let error as RPCError {
      return .failure(error)
    } catch is CancellationError {
      return .failure(RPCError(code: .cancelled, message: "cancelled"))
    } catch {
      return .failure(RPCError(code: .unknown, message: "\(error)"))
    }
  }
}

/// The step events a scheduler records.
enum Events {
  static func attemptStarted(_ step: String, _ attempt: UInt32, digest: [UInt8]) -> RunEvent.OneOf_Kind {
    .attemptStarted(
      .with {
        $0.step = step
        $0.attempt = attempt
        $0.inputDigest = Data(digest)
      })
  }

  static func attemptSucceeded(
    _ step: String, _ attempt: UInt32, result: [UInt8], duration: Duration, cached: Bool
  ) -> RunEvent.OneOf_Kind {
    .attemptSucceeded(
      .with {
        $0.step = step
        $0.attempt = attempt
        $0.result = Data(result)
        $0.durationMicros = duration.micros
        $0.cached = cached
      })
  }

  static func attemptFailed(
    _ step: String, _ attempt: UInt32, _ error: RPCError, retryable: Bool, duration: Duration
  ) -> RunEvent.OneOf_Kind {
    .attemptFailed(
      .with {
        $0.step = step
        $0.attempt = attempt
        $0.statusCode = Int32(error.code.rawValue)
        $0.statusName = error.code.canonicalName
        $0.message = error.message
        $0.retryable = retryable
        $0.durationMicros = duration.micros
      })
  }
}

/// The scheduler's one timer for run timeouts: sleeps until the earliest deadline, and is woken
/// only when a run with an earlier one starts.
final class RunTimer: Sendable {
  let clock: any WallClock
  private let target = Mutex<Timestamp?>(nil)
  private let signal = WakeSignal()

  init(clock: any WallClock) { self.clock = clock }

  func wait(until deadline: Timestamp?) async {
    target.withLock { $0 = deadline }
    await signal.wait(timeout: deadline.map { $0 - clock.now() } ?? .seconds(3600), clock: clock)
  }

  func signalIfEarlier(_ deadline: Timestamp?) {
    guard let deadline else { return }
    let earlier = target.withLock { target in
      guard target.map({ deadline < $0 }) ?? true else { return false }
      target = deadline
      return true
    }
    if earlier { signal.signal() }
  }
}
