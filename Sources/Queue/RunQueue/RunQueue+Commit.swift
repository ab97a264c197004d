import Foundation
package import GPSModel
import SwiftProtobuf
import Synchronization

/// Where a queue is in its life: open for commits, stopped by a write the log could not make
/// durable (every later commit gets that failure: what the state holds may not be on disk), or
/// closed.
enum QueueLifecycle {
  case open
  case failed(QueueError)
  case closed(after: QueueError?)

  /// The failure that stopped the queue, if one did.
  var failure: QueueError? {
    switch self {
    case .open: nil
    case .failed(let error): error
    case .closed(let error): error
    }
  }

  var isClosed: Bool {
    if case .closed = self { return true }
    return false
  }

  /// Refuses a commit unless the queue is open.
  func admit() throws(QueueError) {
    switch self {
    case .open: return
    case .failed(let error), .closed(after: let error?): throw error
    case .closed(after: nil): throw QueueError(code: .closed, message: "the queue is closed")
    }
  }

  /// The log failed: the first failure is the one every later commit gets.
  mutating func fail(_ error: QueueError) {
    switch self {
    case .open: self = .failed(error)
    case .closed(after: nil): self = .closed(after: error)
    case .failed, .closed: return
    }
  }

  /// Closes; returns whether it was closed already.
  mutating func close() -> Bool {
    if isClosed { return true }
    self = .closed(after: failure)
    return false
  }
}

extension RunQueue {
  // MARK: The commit primitive

  /// What a command writes, as its plan decides under the queue's lock at the commit's time.
  enum Plan {
    /// Append these events of one run.
    case write(RunID, [RunEvent.OneOf_Kind])
    /// Append events of several runs in one commit.
    case writeMany([(RunID, [RunEvent.OneOf_Kind])])
    /// Append records of the queue itself (notes, registrations, hand-overs: events of no run),
    /// complete with their times; `wake`: workers may have work now.
    case records([RunEvent], wake: Bool)
    /// Nothing to write; answer this run.
    case unchanged(Run?)
  }

  /// What a commit changed: the runs its events changed (or the one it left unchanged), and the
  /// sequences of its records (nil: it wrote nothing).
  struct Committed: Sendable {
    var runs: [Run]
    var sequences: ClosedRange<UInt64>?
  }

  /// The one way a change reaches the log. Under the queue's lock: refuses unless the queue is
  /// open, runs `plan` at the commit's time, validates its events with the reducer (nothing is
  /// applied unless all are legal), submits their records to the log and applies them to the
  /// state. `durable` is called once they are durable, or with the log's failure (which fails the
  /// queue); it is not called when the plan wrote nothing.
  func submit(
    _ plan: (inout Locked, Timestamp) throws(QueueError) -> Plan,
    durable: @escaping @Sendable (Result<Committed, QueueError>) -> Void
  ) throws(QueueError) -> Committed {
    try locked.withLock { locked throws(QueueError) -> Committed in
      try locked.lifecycle.admit()
      if case .some(let leader) = locked.standbyOf { throw Self.standbyRefusal(leader: leader) }
      let time = max(clock.now(), locked.state.lastTime)
      switch try plan(&locked, time) {
      case .unchanged(let run):
        return Committed(runs: run.map { [$0] } ?? [], sequences: nil)
      case .write(let id, let kinds):
        return try write([(id, kinds)], at: time, into: &locked, durable: durable)
      case .writeMany(let changes):
        guard !changes.isEmpty else { return Committed(runs: [], sequences: nil) }
        return try write(changes, at: time, into: &locked, durable: durable)
      case .records(let events, let wake):
        guard !events.isEmpty else { return Committed(runs: [], sequences: nil) }
        let committed = try append(events, into: &locked, durable: durable)
        if wake { for signal in locked.wakeSignals { signal.signal() } }
        return committed
      }
    }
  }

  /// ``submit(_:durable:)``, returning (without the lock) once what it wrote is durable.
  @discardableResult
  func commit(_ plan: (inout Locked, Timestamp) throws(QueueError) -> Plan) async throws -> Committed {
    try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Committed, any Error>) in
      do {
        let committed = try submit(plan) { continuation.resume(with: $0.mapError { $0 }) }
        if committed.sequences == nil { continuation.resume(returning: committed) }
      } catch {
        continuation.resume(throwing: error)
      }
    }
  }

  /// The events of runs: prepared with the reducer against the state, run by run, and committed
  /// together; a snapshot is taken along every ``QueueOptions/snapshotEvery`` events.
  private func write(
    _ runs: [(RunID, [RunEvent.OneOf_Kind])], at time: Timestamp, into locked: inout Locked,
    durable: @escaping @Sendable (Result<Committed, QueueError>) -> Void
  ) throws(QueueError) -> Committed {
    var changes: [QueueState.Change] = []
    var records: [[UInt8]] = []
    var sequence = locked.nextSequence
    for (id, kinds) in runs {
      // A retired run's events continue its numbering (a new run's id is never looked up).
      let known = try locked.state.run(id, startedBy: kinds.first)
      let first = (known?.eventCount ?? 0) + 1
      let idBytes = Data(id.bytes)
      let events = kinds.enumerated().map { offset, kind in
        RunEvent.with {
          $0.timeMicros = time.micros
          $0.runID = idBytes
          $0.runEvent = first + UInt32(offset)
          $0.kind = kind
        }
      }
      changes.append(try locked.state.prepare(events, firstSequence: sequence, after: changes.last))
      sequence += UInt64(events.count)
      records += try Self.encoded(events)
    }
    locked.eventsSinceSnapshot += records.count
    let snapshotState: QueueState? =
      if options.runIndex == nil, !locked.snapshotInFlight, locked.eventsSinceSnapshot >= options.snapshotEvery {
        {
          var copy = locked.state
          for change in changes { copy.commit(change) }
          return copy
        }()
      } else {
        nil
      }
    let committed = Committed(runs: changes.map(\.after), sequences: locked.nextSequence...(sequence - 1))
    let observed = metrics.map { _ in zip(changes, runs).map { ($0.before, $0.after, $1.1) } }
    let range = try log.submit(records, endsBatch: snapshotState != nil) { [self] result in
      switch result {
      case .success(let receipt):
        if let snapshotState, let hash = receipt.batchHash { writeSnapshot(snapshotState, batchHash: hash) }
        durableWaiters.advance(to: log.lastSequence)
        indexer?.wake()
        if let observed { metrics?.observe(observed, at: time) }
        durable(.success(committed))
      case .failure(let error):
        failed(error)
        durable(.failure(error))
      }
    }
    precondition(range == committed.sequences, "the queue is the log's only writer")
    locked.nextSequence = range.upperBound + 1
    if snapshotState != nil {
      locked.snapshotInFlight = true
      locked.eventsSinceSnapshot = 0
    }
    var newWork = false
    var cancelRequested = false
    for change in changes {
      locked.state.commit(change)
      let run = change.after
      locked.index.track(run, now: time, lateAfter: options.lateAfter)
      if run.isClaimable && change.before?.isClaimable != true { newWork = true }
      if let before = change.before, before.holdsSlot, !run.holdsSlot {
        locked.index.release(slotsOf: before)
        newWork = true
      }
      if run.state == .cancelling, change.before?.state != .cancelling { cancelRequested = true }
    }
    if newWork { for signal in locked.wakeSignals { signal.signal() } }
    if cancelRequested { for signal in locked.cancelSignals { signal.signal() } }
    return committed
  }

  /// Records of the queue itself: applied to a copy of the state (an illegal one throws and
  /// nothing is written), submitted to the log, and the copy made the state.
  private func append(
    _ events: [RunEvent], into locked: inout Locked,
    durable: @escaping @Sendable (Result<Committed, QueueError>) -> Void
  ) throws(QueueError) -> Committed {
    var state = locked.state
    for (offset, event) in events.enumerated() {
      try state.apply(event, sequence: locked.nextSequence + UInt64(offset))
    }
    let records = try Self.encoded(events)
    let committed = Committed(
      runs: [], sequences: locked.nextSequence...(locked.nextSequence + UInt64(records.count) - 1))
    let range = try log.submit(records) { [self] result in
      switch result {
      case .success:
        durableWaiters.advance(to: log.lastSequence)
        indexer?.wake()
        durable(.success(committed))
      case .failure(let error):
        failed(error)
        durable(.failure(error))
      }
    }
    precondition(range == committed.sequences, "the queue is the log's only writer")
    locked.state = state
    locked.nextSequence = range.upperBound + 1
    locked.eventsSinceSnapshot += records.count
    return committed
  }

  static func encoded(_ events: [RunEvent]) throws(QueueError) -> [[UInt8]] {
    do {
      return try events.map { try $0.serializedBytes() }
    } catch {
      throw QueueError(code: .invalidArgument, message: "an event does not encode: \(error)", cause: error)
    }
  }

  /// A write the log could not make durable: the queue stops, and durable waits end.
  private func failed(_ error: QueueError) {
    locked.withLock { $0.lifecycle.fail(error) }
    durableWaiters.fail()
  }

  private func writeSnapshot(_ state: QueueState, batchHash: [UInt8]) {
    snapshotWriter.async { [self] in
      try? snapshots.write(
        Snapshot(lastSequence: state.lastSequence, batchHash: batchHash, payload: state.snapshotPayload()))
      locked.withLock { $0.snapshotInFlight = false }
    }
  }

  // MARK: Notes of the log

  /// Appends a note of the log itself (``RunEvent/isLogNote``: it belongs to no run) and returns
  /// once it is durable, with its sequence. It blocks its thread until then: callers on the
  /// concurrency pool call it from a blocking pool.
  @discardableResult
  package func recordNote(_ kind: RunEvent.OneOf_Kind) throws(QueueError) -> UInt64 {
    let done = DispatchSemaphore(value: 0)
    let failure = Mutex<QueueError?>(nil)
    let committed = try submit(
      { _, time throws(QueueError) in
        let event = RunEvent.with {
          $0.timeMicros = time.micros
          $0.kind = kind
        }
        guard event.isLogNote else {
          throw QueueError(
            code: .invalidArgument, message: "\(event.typeName) is an event of a run, not a note of the log")
        }
        return .records([event], wake: false)
      },
      durable: { result in
        if case .failure(let error) = result { failure.withLock { $0 = error } }
        done.signal()
      })
    done.wait()
    if let error = failure.withLock({ $0 }) { throw error }
    return committed.sequences!.lowerBound
  }
}
