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
