public import GPSModel

/// Which runs a listing wants: every condition that is set must hold.
public struct RunQuery: Sendable, Hashable {
  /// Empty: any state.
  public var states: Set<RunState> = []
  /// `flow/deployment`; empty: any.
  public var deployment = ""
  /// Empty: any.
  public var tag = ""
  /// Enqueued at or after.
  public var enqueuedAfter: Timestamp?
  /// Enqueued before.
  public var enqueuedBefore: Timestamp?

  public init(
    states: Set<RunState> = [], deployment: String = "", tag: String = "", enqueuedAfter: Timestamp? = nil,
    enqueuedBefore: Timestamp? = nil
  ) {
    self.states = states
    self.deployment = deployment
    self.tag = tag
    self.enqueuedAfter = enqueuedAfter
    self.enqueuedBefore = enqueuedBefore
  }

  public var isEmpty: Bool {
    states.isEmpty && deployment.isEmpty && tag.isEmpty && enqueuedAfter == nil && enqueuedBefore == nil
  }

  public func matches(_ run: Run) -> Bool {
    if !states.isEmpty, !states.contains(run.state) { return false }
    if !deployment.isEmpty, run.deployment != deployment { return false }
    if !tag.isEmpty, !run.tags.contains(tag) { return false }
    if let enqueuedAfter, run.enqueuedAt < enqueuedAfter { return false }
    if let enqueuedBefore, run.enqueuedAt >= enqueuedBefore { return false }
    return true
  }
}

/// A page of runs, newest first.
public struct RunPage: Sendable {
  public var runs: [Run]
  /// Where the next page starts (the enqueue sequence of its first run, at most), or nil at the end.
  public var next: UInt64?

  public init(runs: [Run], next: UInt64?) {
    self.runs = runs
    self.next = next
  }
}
