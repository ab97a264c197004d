package import GPSModel
import HeapModule

/// The live queue's indexes, derived from ``QueueState`` and the clock: which runs are ready to
/// claim (and in what order), which wait for their start, which may become Late, and when each
/// lease runs out. Entries are checked against the state when they surface, so a run that changed
/// since it was indexed is skipped rather than searched for and removed.
package struct ReadyIndex {
  /// A claimable run in claim order: higher priority, then earlier scheduled start, then enqueue order.
  struct Entry: Comparable {
    var priority: Int32
    var start: Timestamp
    var order: UInt64
    var id: RunID
    var deployment: String
    /// The run's last sequence when indexed; the entry is stale once the run has moved on.
    var version: UInt64

    static func < (lhs: Entry, rhs: Entry) -> Bool {
      if lhs.priority != rhs.priority { return lhs.priority > rhs.priority }
      if lhs.start != rhs.start { return lhs.start < rhs.start }
      return lhs.order < rhs.order
    }
  }

  /// A run that something happens to at `due` (becomes ready, or becomes Late).
  struct Timer: Comparable {
    var due: Timestamp
    var entry: Entry

    static func < (lhs: Timer, rhs: Timer) -> Bool {
      lhs.due != rhs.due ? lhs.due < rhs.due : lhs.entry < rhs.entry
    }
  }

  /// A concurrency limit a run waits for.
  enum Slot: Hashable {
    case deployment(String)
    case tag(String)
  }

  /// Ready runs by deployment: a worker claims only runs of the deployments it serves.
  var ready: [String: Heap<Entry>] = [:]
  var waiting = Heap<Timer>()
  var lateness = Heap<Timer>()
  /// Ready runs whose deployment or a tag had no free slot, by that slot.
  var parked: [Slot: [Entry]] = [:]
  /// Leased runs and when their lease runs out (the logged expiry, extended by heartbeats).
  var leaseDeadlines: [RunID: Timestamp] = [:]

  package init() {}

  /// Indexes every run of `state`; leases get at least `grace` from `now`, so schedulers that
  /// heartbeat to a restarted queue keep their runs.
  package init(state: QueueState, now: Timestamp, lateAfter: Duration, grace: Duration) {
    for run in state.runs.values where !run.state.isTerminal {
      track(run, now: now, lateAfter: lateAfter)
      if let lease = run.lease { leaseDeadlines[run.id] = max(lease.expiresAt, now + grace) }
    }
  }

  static func entry(for run: Run) -> Entry {
    Entry(
      priority: run.priority, start: run.scheduledStart, order: run.firstSequence, id: run.id,
      deployment: run.deployment, version: run.lastSequence)
  }

  static func isCurrent(_ entry: Entry, in state: QueueState) -> Bool {
    guard let run = state.runs[entry.id] else { return false }
    return run.lastSequence == entry.version && run.isClaimable
  }

  /// Indexes `run` after it changed.
  package mutating func track(_ run: Run, now: Timestamp, lateAfter: Duration) {
    if let lease = run.lease {
      if leaseDeadlines[run.id] == nil || run.lastSequence == lease.token {
        leaseDeadlines[run.id] = lease.expiresAt
      }
    } else {
      leaseDeadlines[run.id] = nil
    }
    guard run.isClaimable else { return }
    let entry = Self.entry(for: run)
    if run.scheduledStart <= now {
      ready[entry.deployment, default: Heap()].insert(entry)
    } else {
      waiting.insert(Timer(due: run.scheduledStart, entry: entry))
    }
    if run.state == .scheduled { lateness.insert(Timer(due: run.scheduledStart + lateAfter, entry: entry)) }
  }

  /// Returns a run that ``next(in:now:limits:pending:)`` gave but was not claimed after all.
  mutating func putBack(_ run: Run) {
    ready[run.deployment, default: Heap()].insert(Self.entry(for: run))
  }

  /// A run gave back its slots: the runs parked behind them may be claimable again.
  mutating func release(slotsOf run: Run) {
    for slot in [Slot.deployment(run.deployment)] + run.tags.map(Slot.tag) {
      if let entries = parked.removeValue(forKey: slot) {
        for entry in entries { ready[entry.deployment, default: Heap()].insert(entry) }
      }
    }
  }

  /// The next run to claim at `now` whose deployment and tags have a free slot, removed from the index.
  ///
  /// `deployments`: only runs of these (nil: of any). `pending` are runs already chosen for the same
  /// commit: they hold slots the state does not show yet.
  package mutating func next(
    in state: QueueState, now: Timestamp, limits: ConcurrencyLimits, deployments: Set<String>? = nil,
    pending: [RunID] = []
  ) -> Run? {
    while let timer = waiting.min, timer.due <= now {
      waiting.removeMin()
      if Self.isCurrent(timer.entry, in: state) { ready[timer.entry.deployment, default: Heap()].insert(timer.entry) }
    }
    while let entry = popBest(of: deployments) {
      guard Self.isCurrent(entry, in: state), let run = state.runs[entry.id] else { continue }
      if let slot = limits.fullSlot(for: run, in: state, pending: pending.compactMap { state.runs[$0] }) {
        parked[slot, default: []].append(entry)
        continue
      }
      return run
    }
    return nil
  }

  /// The first entry in claim order among the ready runs of `deployments` (nil: of all), removed.
  private mutating func popBest(of deployments: Set<String>?) -> Entry? {
    var best: (deployment: String, entry: Entry)?
    if let deployments, deployments.count < ready.count {
      for deployment in deployments {
        if let entry = ready[deployment]?.min, best.map({ entry < $0.entry }) ?? true { best = (deployment, entry) }
      }
    } else {
      for (deployment, heap) in ready where deployments?.contains(deployment) ?? true {
        if let entry = heap.min, best.map({ entry < $0.entry }) ?? true { best = (deployment, entry) }
      }
    }
    guard let best else { return nil }
    ready[best.deployment]!.removeMin()
    if ready[best.deployment]!.isEmpty { ready[best.deployment] = nil }
    return best.entry
  }

  /// Scheduled runs whose lateness time has come, removed from the index.
  package mutating func dueLate(in state: QueueState, now: Timestamp) -> [RunID] {
    var due: [RunID] = []
    while let timer = lateness.min, timer.due <= now {
      lateness.removeMin()
      if Self.isCurrent(timer.entry, in: state), state.runs[timer.entry.id]?.state == .scheduled {
        due.append(timer.entry.id)
      }
    }
    return due
  }

  /// The earliest time something is due: a waiting run's start, a lateness mark or a lease expiry.
  package var nextDeadline: Timestamp? {
    [waiting.min?.due, lateness.min?.due, leaseDeadlines.values.min()].compactMap { $0 }.min()
  }
}
