import SwiftProtobuf

extension RunEvent {
  /// A note of the log itself (an interrupted append cut off, a loss accepted), which belongs to no run.
  public var isLogNote: Bool {
    switch kind {
    case .logTailTruncated, .logLossAccepted, .logSegmentsArchived, .logEventSkipped: true
    default: false
    }
  }

  /// A record of the queue itself, which belongs to no run: a log note or a deployment's registration.
  public var isQueueRecord: Bool {
    switch kind {
    case .logTailTruncated, .logLossAccepted, .logSegmentsArchived, .logEventSkipped, .deploymentRegistered,
      .deploymentHandedOver:
      true
    default: false
    }
  }

  /// The run the event belongs to (nil for a log note, or a damaged event).
  public var run: RunID? { RunID(bytes: runID) }

  /// The event's type as history prints it, e.g. `RunClaimed`, `TaskAttemptFailed`.
  public var typeName: String {
    switch kind {
    case .enqueued: "RunEnqueued"
    case .markedLate: "RunMarkedLate"
    case .claimed: "RunClaimed"
    case .leaseExpired: "LeaseExpired"
    case .started: "RunStarted"
    case .attemptStarted: "TaskAttemptStarted"
    case .attemptSucceeded: "TaskAttemptSucceeded"
    case .attemptFailed: "TaskAttemptFailed"
    case .retryScheduled: "TaskRetryScheduled"
    case .completed: "RunCompleted"
    case .failed: "RunFailed"
    case .timedOut: "RunTimedOut"
    case .cancelRequested: "CancelRequested"
    case .cancelled: "RunCancelled"
    case .crashed: "RunCrashed"
    case .requeued: "RunRequeued"
    case .retried: "RunRetried"
    case .logTailTruncated: "LogTailTruncated"
    case .logLossAccepted: "LogLossAccepted"
    case .logSegmentsArchived: "LogSegmentsArchived"
    case .logEventSkipped: "LogEventSkipped"
    case .deploymentRegistered: "DeploymentRegistered"
    case .deploymentHandedOver: "DeploymentHandedOver"
    case nil: "Unknown"
    }
  }

  public var time: Timestamp { Timestamp(micros: timeMicros) }
}
