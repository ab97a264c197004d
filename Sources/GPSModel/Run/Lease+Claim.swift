/// Names a run and the lease a scheduler holds it under; every report of the scheduler carries it.
public struct LeaseToken: Sendable, Hashable {
  public var runID: RunID
  public var token: UInt64

  public init(runID: RunID, token: UInt64) {
    self.runID = runID
    self.token = token
  }
}

/// A run a scheduler claimed, and the lease it must present in heartbeats and reports.
public struct Claim: Sendable {
  public var run: Run
  public var lease: Lease
  public var token: LeaseToken { LeaseToken(runID: run.id, token: lease.token) }

  public init(run: Run, lease: Lease) {
    self.run = run
    self.lease = lease
  }
}

/// A renewed lease's new expiry, and whether the run's cancellation was asked for.
public struct HeartbeatReply: Sendable, Hashable {
  public var expiresAt: Timestamp
  /// A user asked to cancel the run: stop its work and report ``RunEvent/OneOf_Kind/cancelled(_:)``.
  public var cancelRequested: Bool

  public init(expiresAt: Timestamp, cancelRequested: Bool) {
    self.expiresAt = expiresAt
    self.cancelRequested = cancelRequested
  }
}
