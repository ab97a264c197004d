public import Foundation
import SwiftProtobuf

/// A parameter of a plain type instead of a message: `string`, `int64`, `int32`, `double`, `bool`,
/// `bytes`, or a list of one (`repeated string`). Its typed value is encoded as field 1 of a
/// message, the layout of the wrapper types (`google.protobuf.StringValue` …) and of a message
/// with one `repeated` field; ``StepContext/parameter(_:as:)-(_,ScalarParameter.Type)`` decodes it.
public protocol ScalarParameter: Sendable {
  /// The parameter type name, e.g. `string`.
  static var parameterType: String { get }
  /// Decodes the typed value (nil: not one of this type).
  init?(parameterBytes: [UInt8])
}

enum ScalarParameterTypes {
  static let kinds: [String: Google_Protobuf_FieldDescriptorProto.TypeEnum] = [
    "string": .string, "int64": .int64, "int32": .int32, "uint64": .uint64, "uint32": .uint32, "double": .double,
    "float": .float, "bool": .bool, "bytes": .bytes,
  ]

  /// The field a scalar parameter type validates as (number 1), or nil when `type` is a message.
  static func field(for type: String) -> Google_Protobuf_FieldDescriptorProto? {
    let repeated = type.hasPrefix("repeated ")
    let name = repeated ? String(type.dropFirst("repeated ".count)) : type
    guard let kind = kinds[name] else { return nil }
    var field = Google_Protobuf_FieldDescriptorProto()
    field.name = "value"
    field.jsonName = "value"
    field.number = 1
    field.type = kind
    field.label = repeated ? .repeated : .optional
    return field
  }
}

extension String: ScalarParameter {
  public static var parameterType: String { "string" }
  public init?(parameterBytes: [UInt8]) {
    guard let value = try? Google_Protobuf_StringValue(serializedBytes: parameterBytes) else { return nil }
    self = value.value
  }
}

extension Int64: ScalarParameter {
  public static var parameterType: String { "int64" }
  public init?(parameterBytes: [UInt8]) {
    guard let value = try? Google_Protobuf_Int64Value(serializedBytes: parameterBytes) else { return nil }
    self = value.value
  }
}

extension Int32: ScalarParameter {
  public static var parameterType: String { "int32" }
  public init?(parameterBytes: [UInt8]) {
    guard let value = try? Google_Protobuf_Int32Value(serializedBytes: parameterBytes) else { return nil }
    self = value.value
  }
}

extension Double: ScalarParameter {
  public static var parameterType: String { "double" }
  public init?(parameterBytes: [UInt8]) {
    guard let value = try? Google_Protobuf_DoubleValue(serializedBytes: parameterBytes) else { return nil }
    self = value.value
  }
}

extension Bool: ScalarParameter {
  public static var parameterType: String { "bool" }
  public init?(parameterBytes: [UInt8]) {
    guard let value = try? Google_Protobuf_BoolValue(serializedBytes: parameterBytes) else { return nil }
    self = value.value
  }
}

extension Data: ScalarParameter {
  public static var parameterType: String { "bytes" }
  public init?(parameterBytes: [UInt8]) {
    guard let value = try? Google_Protobuf_BytesValue(serializedBytes: parameterBytes) else { return nil }
    self = value.value
  }
}

extension Array: ScalarParameter where Element: ScalarParameter {
  public static var parameterType: String { "repeated \(Element.parameterType)" }
  /// Field 1, repeated: packed (numbers, booleans) or one record per element (strings, bytes).
  public init?(parameterBytes: [UInt8]) {
    var reader = WireReader(bytes: parameterBytes)
    var elements: [Element] = []
    while !reader.isAtEnd {
      guard let tag = reader.varint() else { return nil }
      let (number, wire) = (tag >> 3, tag & 7)
      guard number == 1, let payload = reader.payload(wire: wire) else { return nil }
      if wire == 2, Element.self != String.self, Element.self != Data.self {
        // Packed: each element re-tagged as a single field, then decoded like one.
        var packed = WireReader(bytes: payload)
        let elementWire: UInt64 =
          switch Element.parameterType {
          case "double": 1
          case "float": 5
          default: 0
          }
        while !packed.isAtEnd {
          guard let element = packed.payload(wire: elementWire),
            let value = Element(parameterBytes: ProtoJSON.tag(1, wire: elementWire) + element)
          else { return nil }
          elements.append(value)
        }
      } else {
        let length = wire == 2 ? ProtoJSON.varint(UInt64(payload.count)) : []
        guard let value = Element(parameterBytes: ProtoJSON.tag(1, wire: wire) + length + payload) else { return nil }
        elements.append(value)
      }
    }
    self = elements
  }
}

/// Reads protobuf wire records.
struct WireReader {
  let bytes: [UInt8]
  var offset = 0

  var isAtEnd: Bool { offset >= bytes.count }

  mutating func varint() -> UInt64? {
    var value: UInt64 = 0
    var shift: UInt64 = 0
    while offset < bytes.count, shift < 64 {
      let byte = bytes[offset]
      offset += 1
      value |= UInt64(byte & 0x7F) << shift
      if byte & 0x80 == 0 { return value }
      shift += 7
    }
    return nil
  }

  /// A record's payload without its tag: the varint's bytes, 8 or 4 fixed bytes, or a length-delimited body.
  mutating func payload(wire: UInt64) -> [UInt8]? {
    let start = offset
    switch wire {
    case 0:
      guard varint() != nil else { return nil }
      return Array(bytes[start..<offset])
    case 1, 5:
      let size = wire == 1 ? 8 : 4
      guard offset + size <= bytes.count else { return nil }
      offset += size
      return Array(bytes[start..<offset])
    case 2:
      guard let length = varint(), length <= UInt64(bytes.count - offset) else { return nil }
      defer { offset += Int(length) }
      return Array(bytes[offset..<offset + Int(length)])
    default:
      return nil
    }
  }
}
