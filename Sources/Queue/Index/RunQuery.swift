package import GPSModel

/// Which runs a listing wants: every condition that is set must hold.
package struct RunQuery: Sendable, Hashable {
  /// Empty: any state.
  package var states: Set<RunState> = []
  /// `flow/deployment`; empty: any.
  package var deployment = ""
  /// Empty: any.
  package var tag = ""
  /// Enqueued at or after.
  package var enqueuedAfter: Timestamp?
  /// Enqueued before.
  package var enqueuedBefore: Timestamp?

  package init(
    states: Set<RunState> = [], deployment: String = "", tag: String = "", enqueuedAfter: Timestamp? = nil,
    enqueuedBefore: Timestamp? = nil
  ) {
    self.states = states
    self.deployment = deployment
    self.tag = tag
    self.enqueuedAfter = enqueuedAfter
    self.enqueuedBefore = enqueuedBefore
  }

  package var isEmpty: Bool {
    states.isEmpty && deployment.isEmpty && tag.isEmpty && enqueuedAfter == nil && enqueuedBefore == nil
  }

  package func matches(_ run: Run) -> Bool {
    if !states.isEmpty, !states.contains(run.state) { return false }
    if !deployment.isEmpty, run.deployment != deployment { return false }
    if !tag.isEmpty, !run.tags.contains(tag) { return false }
    if let enqueuedAfter, run.enqueuedAt < enqueuedAfter { return false }
    if let enqueuedBefore, run.enqueuedAt >= enqueuedBefore { return false }
    return true
  }
}

/// A page of runs, newest first.
package struct RunPage: Sendable {
  package var runs: [Run]
  /// Where the next page starts (the enqueue sequence of its first run, at most), or nil at the end.
  package var next: UInt64?

  package init(runs: [Run], next: UInt64?) {
    self.runs = runs
    self.next = next
  }
}
