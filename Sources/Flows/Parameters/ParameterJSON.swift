public import SwiftProtobuf

/// Decodes a parameter given as JSON into its protobuf message type.
///
/// Accepts proto field names and lowerCamel JSON names. Errors are one line naming the parameter.
public enum ParameterJSON {
  /// - Parameters:
  ///   - parameter: The parameter's name, e.g. `data_info`, used in error messages.
  ///   - example: A valid value shown in error messages.
  public static func decode<M: SwiftProtobuf.Message>(
    _ type: M.Type, from json: String, parameter: String, example: String
  ) throws(FlowsError) -> M {
    do {
      return try M(jsonString: json)
    } catch {
      throw FlowsError(
        code: .invalidParameter,
        message: "\(parameter): \(describe(error)); expected JSON such as \(example)",
        cause: error)
    }
  }

  static func describe(_ error: any Error) -> String {
    guard let error = error as? JSONDecodingError else { return "invalid JSON (\(error))" }
    switch error {
    case .unknownField(let name): return "unknown field '\(name)'"
    case .truncated: return "the JSON ends too early"
    case .unquotedMapKey, .malformedMap: return "malformed JSON object"
    case .numberRange: return "a number is out of range"
    case .malformedNumber, .leadingZero: return "a malformed number"
    case .malformedString, .invalidUTF8: return "a malformed string"
    case .malformedBool: return "a malformed boolean"
    case .trailingGarbage: return "unexpected text after the JSON value"
    case .schemaMismatch: return "a value does not have its field's type"
    case .illegalNull: return "null where a value is required"
    default: return "invalid JSON (\(error))"
    }
  }
}
