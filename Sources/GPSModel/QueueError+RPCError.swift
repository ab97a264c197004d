public import GRPCCore

extension QueueError {
  /// The queue error behind a control API status (for remote schedulers).
  package init(_ error: RPCError) {
    let code: QueueError.Code =
      switch error.code {
      case .notFound: .notFound
      case .invalidArgument: .invalidArgument
      case .failedPrecondition: .illegalTransition
      case .aborted: .leaseLost
      // Includes UNAVAILABLE: a server that restarts is waited for, not given up on.
      default: .io
      }
    self.init(code: code, message: error.message, cause: error)
  }
}

/// A queue error thrown by a gRPC handler answers with its status: the message as it is, and the
/// code a client maps back with ``QueueError/init(_:)``.
extension QueueError: RPCErrorConvertible {
  public var rpcErrorCode: RPCError.Code {
    switch code {
    case .notFound: .notFound
    case .invalidArgument: .invalidArgument
    case .illegalTransition: .failedPrecondition
    case .leaseLost: .aborted
    case .closed, .writerStopped, .locked, .fenced, .notLeader, .unavailable: .unavailable
    case .corrupt, .dataLost: .dataLoss
    case .conflict: .alreadyExists
    case .tooLarge: .resourceExhausted
    default: .internalError
    }
  }

  public var rpcErrorMessage: String { message }

  /// A standby names the leader in `gps-leader`: clients switch to it.
  public var rpcErrorMetadata: Metadata {
    guard let leader else { return [:] }
    return [QueueError.leaderMetadataKey: .string(leader)]
  }

  /// The metadata key a standby's refusal names the leader in.
  public static let leaderMetadataKey = "gps-leader"

  /// The leader a standby's refusal names, if it names one.
  public static func leader(of error: RPCError) -> String? {
    error.metadata[stringValues: leaderMetadataKey].first(where: { _ in true })
  }

  /// None: what a client sees is the message, which says what to do.
  public var rpcErrorCause: (any Error)? { nil }
}
