/// The state of a run, named as Prefect names them.
public enum RunState: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
  /// Waiting for its scheduled start, or ready and waiting for a scheduler.
  case scheduled = "Scheduled"
  /// Still not started well after its scheduled start.
  case late = "Late"
  /// A step failed and will be retried (the scheduler holds the run), or a crashed run was re-queued.
  case awaitingRetry = "AwaitingRetry"
  /// Claimed by a scheduler, not yet started.
  case pending = "Pending"
  case running = "Running"
  /// Running a step again after a failed attempt.
  case retrying = "Retrying"
  /// Cancellation was requested; the scheduler is stopping it.
  case cancelling = "Cancelling"
  case cancelled = "Cancelled"
  case completed = "Completed"
  /// Completed from cached step results.
  case cached = "Cached"
  case failed = "Failed"
  case timedOut = "TimedOut"
  /// Its execution ended abnormally (its scheduler vanished or reported a crash).
  case crashed = "Crashed"

  public var isTerminal: Bool {
    switch self {
    case .completed, .cached, .failed, .timedOut, .cancelled, .crashed: true
    default: false
    }
  }

  /// Parses a state name case-insensitively (`running`, `Running`, `timed_out`, `TimedOut`).
  public init?(name: String) {
    let folded = name.lowercased().filter { $0 != "_" && $0 != "-" }
    guard let state = Self.allCases.first(where: { $0.rawValue.lowercased() == folded }) else { return nil }
    self = state
  }

  public var description: String { rawValue }
}
