public import Foundation

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
