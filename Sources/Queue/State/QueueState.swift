/// The whole queue: the pure fold of the log's events.
///
/// `apply` is the only way to change it, and the live ``RunQueue``, startup replay, history and
/// audit all use it, so the state a server holds is exactly the state a replay of its log gives.
public struct QueueState: Sendable, Hashable {
  public internal(set) var runs: [RunID: Run] = [:]
  /// Idempotency key → run; enqueueing a known key returns that run.
  public internal(set) var idempotencyKeys: [String: RunID] = [:]
  /// The sequence of the last event applied (0 for an empty log).
  public internal(set) var lastSequence: UInt64 = 0
  /// The time of the last event applied; event times never decrease.
  public internal(set) var lastTime: Timestamp = .zero
  /// Leased runs per deployment and per tag: the concurrency slots in use. Derived from `runs`.
  public internal(set) var slotsByDeployment: [String: Int] = [:]
  public internal(set) var slotsByTag: [String: Int] = [:]
  /// How many runs are in each state. Derived from `runs`.
  public internal(set) var counts: [RunState: Int] = [:]

  public init() {}

  /// Decodes one log record and applies it.
  public mutating func apply(_ record: LogRecord) throws(QueueError) {
    try apply([try RunEvent(record)], firstSequence: record.sequence)
  }

  /// Applies consecutive events of one run, numbered from `firstSequence`: all of them, or none
  /// when one is not a legal transition (``QueueError/Code-swift.struct/illegalTransition``).
  public mutating func apply(_ events: [RunEvent], firstSequence: UInt64) throws(QueueError) {
    guard !events.isEmpty else { return }
    commit(try prepare(events, firstSequence: firstSequence))
  }

  /// A validated change of one run, not yet applied.
  struct Change {
    var before: Run?
    var after: Run
    var lastSequence: UInt64
    var lastTime: Timestamp
  }

  /// Validates `events` (one run's, consecutive from `firstSequence`) without changing anything.
  func prepare(_ events: [RunEvent], firstSequence: UInt64) throws(QueueError) -> Change {
    let first = events[0]
    guard firstSequence == lastSequence + 1 else {
      throw QueueError(
        code: .illegalTransition,
        message: "event \(firstSequence) follows event \(lastSequence); the log's sequences have a gap")
    }
    guard let id = RunID(bytes: first.runID) else {
      throw QueueError(
        code: .illegalTransition, message: "event \(firstSequence) has a run id of \(first.runID.count) bytes, not 16")
    }
    let before = runs[id]
    var run = before
    var time = lastTime
    for (offset, event) in events.enumerated() {
      let sequence = firstSequence + UInt64(offset)
      guard event.runID == first.runID else {
        throw QueueError(code: .invalidArgument, message: "events applied together must belong to one run")
      }
      guard event.time >= time else {
        throw QueueError(
          code: .illegalTransition,
          message:
            "event \(sequence) at \(event.time) is older than the event before it (\(time)); event times never go back")
      }
      time = event.time
      do throws(TransitionError) {
        if run == nil {
          guard case .enqueued(let enqueued) = event.kind, event.runEvent == 1 else {
            throw TransitionError(message: "run \(id): \(event.typeName) for a run that was never enqueued")
          }
          if !enqueued.idempotencyKey.isEmpty, let existing = idempotencyKeys[enqueued.idempotencyKey] {
            throw TransitionError(
              message: "run \(id): idempotency key \"\(enqueued.idempotencyKey)\" already belongs to run \(existing)")
          }
          run = Run(id: id, enqueued: enqueued, time: event.time, sequence: sequence)
        } else {
          try run!.apply(event, sequence: sequence)
        }
      } catch {
        throw QueueError(code: .illegalTransition, message: "event \(sequence): \(error.message)")
      }
    }
    return Change(
      before: before, after: run!, lastSequence: firstSequence + UInt64(events.count) - 1, lastTime: time)
  }

  mutating func commit(_ change: Change) {
    let after = change.after
    if change.before == nil, !after.idempotencyKey.isEmpty { idempotencyKeys[after.idempotencyKey] = after.id }
    if let before = change.before {
      counts[before.state, default: 0] -= 1
      if counts[before.state] == 0 { counts[before.state] = nil }
      if before.holdsSlot { adjustSlots(of: before, by: -1) }
    }
    counts[after.state, default: 0] += 1
    if after.holdsSlot { adjustSlots(of: after, by: 1) }
    runs[after.id] = after
    lastSequence = change.lastSequence
    lastTime = change.lastTime
  }

  private mutating func adjustSlots(of run: Run, by delta: Int) {
    slotsByDeployment[run.deployment, default: 0] += delta
    if slotsByDeployment[run.deployment] == 0 { slotsByDeployment[run.deployment] = nil }
    for tag in run.tags {
      slotsByTag[tag, default: 0] += delta
      if slotsByTag[tag] == 0 { slotsByTag[tag] = nil }
    }
  }

  /// Rebuilds the derived tables (`counts`, slots, idempotency keys) from `runs`: after loading a snapshot.
  mutating func rebuildDerived() {
    idempotencyKeys = [:]
    slotsByDeployment = [:]
    slotsByTag = [:]
    counts = [:]
    for run in runs.values {
      if !run.idempotencyKey.isEmpty { idempotencyKeys[run.idempotencyKey] = run.id }
      counts[run.state, default: 0] += 1
      if run.holdsSlot { adjustSlots(of: run, by: 1) }
    }
  }
}
