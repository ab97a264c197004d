/// An error of the queue and its storage.
public struct QueueError: Error, Sendable, CustomStringConvertible {
  /// What kind of failure; compare with `==` in `catch` clauses.
  public struct Code: Sendable, Hashable, CustomStringConvertible {
    private enum Value: Sendable, Hashable {
      case corrupt
    }

    private let value: Value

    /// Stored bytes do not decode: a checksum, a frame or a compressed block is wrong.
    public static let corrupt = Code(value: .corrupt)

    public var description: String {
      switch value {
      case .corrupt: "corrupt"
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
