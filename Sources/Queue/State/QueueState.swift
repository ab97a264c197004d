package import GPSModel

/// The whole queue: the pure fold of the log's events.
///
/// `apply` is the only way to change it, and the live ``RunQueue``, startup replay, history and
/// audit all use it, so the state a server holds is exactly the state a replay of its log gives.
package struct QueueState: Sendable, Hashable {
  package internal(set) var runs = RunTable()
  /// Idempotency key → run; enqueueing a known key returns that run.
  package internal(set) var idempotencyKeys: [String: RunID] = [:]
  /// The sequence of the last event applied (0 for an empty log).
  package internal(set) var lastSequence: UInt64 = 0
  /// The time of the last event applied; event times never decrease.
  package internal(set) var lastTime: Timestamp = .zero
  /// Leased runs per deployment and per tag: the concurrency slots in use. Derived from `runs`.
  package internal(set) var slotsByDeployment: [String: Int] = [:]
  package internal(set) var slotsByTag: [String: Int] = [:]
  /// How many runs are in each state. Derived from `runs`.
  package internal(set) var counts = StateCounts()
  /// Unfinished runs per deployment (those waiting for a worker are these less the leased ones,
  /// `slotsByDeployment`). Derived from `runs`.
  package internal(set) var activeByDeployment: [String: Int] = [:]
  /// Every registered version of every deployment, oldest first, by deployment name.
  package internal(set) var deployments: [String: [DeploymentVersion]] = [:]
  /// Deployments an admin handed over to another principal, by name (the newest hand-over).
  package internal(set) var handOvers: [String: DeploymentHandOver] = [:]
  /// Where terminal runs that left `runs` are found (the run index); none: every run is in `runs`.
  /// Not part of the state's value: two states are equal when their contents are.
  var retired = RetiredRunsReference()
  /// Events of the log a replay passes over (`log/SKIPPED`): not part of the state's value either.
  var skipping = SkipDecisions()

  package init() {}

  /// The run with `id`, in memory or retired to the run index.
  package func run(_ id: RunID) throws(QueueError) -> Run? {
    if let run = runs[id] { return run }
    return try retired.store?.retiredRun(id)
  }

  /// Runs in memory matching `query`, newest first, enqueued at sequence `upTo` or before (nil: from
  /// the newest): at most `limit`, with where the next page starts.
  package func runs(matching query: RunQuery, upTo: UInt64?, limit: Int) -> RunPage {
    let found = runs.runs(matching: query, upTo: upTo ?? .max, limit: max(1, limit) + 1)
    guard found.count > max(1, limit) else { return RunPage(runs: found, next: nil) }
    return RunPage(runs: Array(found.dropLast()), next: found.last!.firstSequence)
  }

  /// The run with `id` that an event of `kind` changes: a run being enqueued is never looked up in
  /// the index, its id is new (an enqueue with a caller's id checks that before).
  func run(_ id: RunID, startedBy kind: RunEvent.OneOf_Kind?) throws(QueueError) -> Run? {
    if case .enqueued = kind { return runs[id] }
    return try run(id)
  }

  /// The run enqueued with idempotency key `key`, in memory or retired to the run index.
  package func run(idempotencyKey key: String) throws(QueueError) -> Run? {
    if let id = idempotencyKeys[key], let run = runs[id] { return run }
    return try retired.store?.retiredRun(idempotencyKey: key)
  }

  /// Drops from memory the terminal runs whose last event is at or before `sequence`, once at least
  /// `minimum` of them can go: the run index holds them from there. Counts keep them. Returns how
  /// many left.
  @discardableResult
  mutating func retire(through sequence: UInt64, minimum: Int = 1) -> Int {
    let leaving = runs.values.count { $0.state.isTerminal && $0.lastSequence <= sequence }
    guard leaving >= max(minimum, 1) else { return 0 }
    drop(count: leaving) { $0.state.isTerminal && $0.lastSequence <= sequence }
    return leaving
  }

  /// Drops from memory the runs with these ids (terminal ones the run index holds as they are).
  /// Counts keep them.
  mutating func retire(_ ids: Set<RunID>) {
    guard !ids.isEmpty else { return }
    drop(count: ids.count) { ids.contains($0.id) }
  }

  /// Drops the `count` runs that `leaves` picks, and their idempotency keys.
  private mutating func drop(count: Int, where leaves: (Run) -> Bool) {
    var kept: [Run] = []
    kept.reserveCapacity(max(0, runs.count - count))
    for run in runs.values {
      if leaves(run) {
        if !run.idempotencyKey.isEmpty, idempotencyKeys[run.idempotencyKey] == run.id {
          idempotencyKeys[run.idempotencyKey] = nil
        }
      } else {
        kept.append(run)
      }
    }
    runs = RunTable(kept)
  }

  /// Decodes one log record and applies it.
  package mutating func apply(_ record: LogRecord) throws(QueueError) {
    try apply(try RunEvent(record), sequence: record.sequence)
  }

  /// Applies one event, changing its run in place (the replay path: no copy of the run). An event
  /// it refuses throws with ``QueueError/refusedEvent`` set; one a recorded decision skips
  /// (`log/SKIPPED`) is passed over.
  package mutating func apply(_ event: RunEvent, sequence: UInt64) throws(QueueError) {
    if !skipping.isEmpty, try skipIfDecided(event, sequence: sequence) { return }
    do throws(QueueError) {
      try applyOne(event, sequence: sequence)
    } catch {
      var refused = error
      refused.refusedEvent = sequence
      throw refused
    }
  }

  private mutating func applyOne(_ event: RunEvent, sequence: UInt64) throws(QueueError) {
    if event.isQueueRecord {
      guard event.runID.isEmpty else {
        throw QueueError(
          code: .illegalTransition, message: "event \(sequence): \(event.typeName) belongs to the queue, not to a run")
      }
      try checkOrder(event, sequence: sequence)
      switch event.kind {
      case .deploymentRegistered(let registered): try register(registered, time: event.time, sequence: sequence)
      case .deploymentHandedOver(let handedOver): try handOver(handedOver, time: event.time, sequence: sequence)
      default: break
      }
      lastSequence = sequence
      lastTime = event.time
      return
    }
    guard let id = RunID(bytes: event.runID) else { return try apply([event], firstSequence: sequence) }
    if case .enqueued = event.kind { return try apply([event], firstSequence: sequence) }
    try checkOrder(event, sequence: sequence)
    let transition: Run.Transition?
    do throws(TransitionError) {
      transition = try runs.modify(id) { run throws(TransitionError) in try run.apply(event, sequence: sequence) }
    } catch {
      throw QueueError(code: .illegalTransition, message: "event \(sequence): \(error.message)")
    }
    // No such run: the general path explains.
    guard let transition else { return try apply([event], firstSequence: sequence) }
    if transition.from != transition.to {
      counts[transition.from] -= 1
      counts[transition.to] += 1
      if transition.from.isTerminal != transition.to.isTerminal {
        adjustActive(runs[id]!.deployment, by: transition.to.isTerminal ? -1 : 1)
      }
    }
    if transition.heldSlot != transition.holdsSlot {
      adjustSlots(of: runs[id]!.spec, by: transition.holdsSlot ? 1 : -1)
    }
    lastSequence = sequence
    lastTime = event.time
  }

  func checkOrder(_ event: RunEvent, sequence: UInt64) throws(QueueError) {
    guard lastSequence < .max, sequence == lastSequence + 1 else {
      throw QueueError(
        code: .illegalTransition,
        message: "event \(sequence) follows event \(lastSequence); the log's sequences have a gap")
    }
    guard event.time >= lastTime else {
      throw QueueError(
        code: .illegalTransition,
        message:
          "event \(sequence) at \(event.time) is older than the event before it (\(lastTime)); event times never go back"
      )
    }
  }

  /// Applies consecutive events of one run, numbered from `firstSequence`: all of them, or none
  /// when one is not a legal transition (``QueueError/Code-swift.struct/illegalTransition``).
  package mutating func apply(_ events: [RunEvent], firstSequence: UInt64) throws(QueueError) {
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
  ///
  /// `after`, a change of another run prepared just before (not yet committed), is where these
  /// events continue from: several runs' changes can be validated before any is applied.
  func prepare(_ events: [RunEvent], firstSequence: UInt64, after previous: Change? = nil) throws(QueueError) -> Change
  {
    let first = events[0]
    let lastSequence = previous?.lastSequence ?? self.lastSequence
    let lastTime = previous?.lastTime ?? self.lastTime
    guard lastSequence < .max, firstSequence == lastSequence + 1,
      firstSequence <= UInt64.max - UInt64(events.count - 1)
    else {
      throw QueueError(
        code: .illegalTransition,
        message: "event \(firstSequence) follows event \(lastSequence); the log's sequences have a gap")
    }
    guard let id = RunID(bytes: first.runID) else {
      throw QueueError(
        code: .illegalTransition, message: "event \(firstSequence) has a run id of \(first.runID.count) bytes, not 16")
    }
    let before = try run(id, startedBy: first.kind)
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
          if !enqueued.idempotencyKey.isEmpty, !enqueued.idempotencyKeyRenewed,
            let existing = idempotencyKeys[enqueued.idempotencyKey]
          {
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
    // A new run's key, or the key of a retired run back in memory (retried).
    if !after.idempotencyKey.isEmpty, change.before == nil || runs[after.id] == nil {
      idempotencyKeys[after.idempotencyKey] = after.id
    }
    if let before = change.before {
      counts[before.state] -= 1
      if before.holdsSlot { adjustSlots(of: before.spec, by: -1) }
      if !before.state.isTerminal { adjustActive(before.deployment, by: -1) }
    }
    counts[after.state] += 1
    if !after.state.isTerminal { adjustActive(after.deployment, by: 1) }
    if after.holdsSlot { adjustSlots(of: after.spec, by: 1) }
    runs.put(after)
    lastSequence = change.lastSequence
    lastTime = change.lastTime
  }

  private mutating func adjustActive(_ deployment: String, by delta: Int) {
    activeByDeployment[deployment, default: 0] += delta
    if activeByDeployment[deployment] == 0 { activeByDeployment[deployment] = nil }
  }

  private mutating func adjustSlots(of run: RunSpec, by delta: Int) {
    slotsByDeployment[run.deployment, default: 0] += delta
    if slotsByDeployment[run.deployment] == 0 { slotsByDeployment[run.deployment] = nil }
    for tag in run.tags {
      slotsByTag[tag, default: 0] += delta
      if slotsByTag[tag] == 0 { slotsByTag[tag] = nil }
    }
  }

  /// Rebuilds the derived tables (`counts`, slots, idempotency keys) from `runs`: after loading a snapshot.
  mutating func rebuildDerived(from runs: [Run]) {
    idempotencyKeys = [:]
    idempotencyKeys.reserveCapacity(runs.count)
    slotsByDeployment = [:]
    slotsByTag = [:]
    activeByDeployment = [:]
    counts = StateCounts()
    // Through the buffer, reading fields in place: `for run in runs` would copy (retain and
    // release) every run.
    runs.withUnsafeBufferPointer { runs in
      for index in runs.indices {
        let key = runs[index].spec.idempotencyKey
        if !key.isEmpty { idempotencyKeys[key] = runs[index].id }
        counts[runs[index].state] += 1
        if !runs[index].state.isTerminal { adjustActive(runs[index].spec.deployment, by: 1) }
        if runs[index].lease != nil { adjustSlots(of: runs[index].spec, by: 1) }
      }
    }
  }
}

/// How many runs are in each state.
package struct StateCounts: Sendable, Hashable {
  private var values = [Int](repeating: 0, count: RunState.allCases.count)

  package init() {}

  package subscript(state: RunState) -> Int {
    get { values[state.index] }
    set { values[state.index] = newValue }
  }

  /// All runs.
  package var total: Int { values.reduce(0, +) }
}

extension RunState {
  /// The states by ``index``.
  static let byIndex = allCases

  /// The position in `allCases`: a dense index for tables.
  var index: Int {
    switch self {
    case .scheduled: 0
    case .late: 1
    case .awaitingRetry: 2
    case .pending: 3
    case .running: 4
    case .retrying: 5
    case .cancelling: 6
    case .cancelled: 7
    case .completed: 8
    case .cached: 9
    case .failed: 10
    case .timedOut: 11
    case .crashed: 12
    }
  }
}
