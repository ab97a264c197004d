/// An error of flows, deployments and parameters.
public struct FlowsError: Error, Sendable, CustomStringConvertible {
  public struct Code: Sendable, Hashable, CustomStringConvertible {
    private enum Value: Sendable, Hashable {
      case invalidParameter
    }

    private let value: Value

    /// A parameter's JSON does not decode into its declared type.
    public static let invalidParameter = Code(value: .invalidParameter)

    public var description: String {
      switch value {
      case .invalidParameter: "invalid parameter"
      }
    }
  }

  public var code: Code
  /// One line saying what is wrong and what to do.
  public var message: String
  public var cause: (any Error)?

  public init(code: Code, message: String, cause: (any Error)? = nil) {
    self.code = code
    self.message = message
    self.cause = cause
  }

  public var description: String { message }
}
