public import GRPCCore

/// An error of flows, deployments and parameters.
public struct FlowsError: Error, Sendable, CustomStringConvertible {
  /// What went wrong, for programs to tell apart.
  public struct Code: Sendable, Hashable, CustomStringConvertible {
    private enum Value: Sendable, Hashable {
      case invalidParameter, unknownDeployment, stepFailed
    }

    private let value: Value

    /// Parameters do not validate against their declared types (every problem is in `problems`).
    public static let invalidParameter = Code(value: .invalidParameter)

    /// No deployment has that name.
    public static let unknownDeployment = Code(value: .unknownDeployment)
    /// A task step failed (the message names the step, the service and the status).
    public static let stepFailed = Code(value: .stepFailed)

    public var description: String {
      switch value {
      case .invalidParameter: "invalid parameter"
      case .unknownDeployment: "unknown deployment"
      case .stepFailed: "step failed"
      }
    }
  }

  public var code: Code
  /// One line saying what is wrong and what to do.
  public var message: String
  public var cause: (any Error)?
  /// Every problem found, each one line with its path (for invalid parameters); `message` joins them.
  public var problems: [String]

  public init(code: Code, message: String, cause: (any Error)? = nil, problems: [String] = []) {
    self.code = code
    self.message = message
    self.cause = cause
    self.problems = problems.isEmpty ? [message] : problems
  }

  public var description: String { message }
}

/// A flows error thrown by a gRPC handler answers with its status and message.
extension FlowsError: RPCErrorConvertible {
  public var rpcErrorCode: RPCError.Code {
    switch code {
    case .unknownDeployment: .notFound
    case .invalidParameter: .invalidArgument
    default: .failedPrecondition
    }
  }

  public var rpcErrorMessage: String { message }

  /// None: what a client sees is the message, which says what to do.
  public var rpcErrorCause: (any Error)? { nil }
}
