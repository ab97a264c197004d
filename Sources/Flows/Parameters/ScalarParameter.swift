public import Foundation
package import SwiftProtobuf

/// A parameter of a plain type instead of a message: `string`, `int64`, `int32`, `uint64`, `uint32`,
/// `double`, `float`, `bool`, `bytes`, or a list of one (`repeated string`). Its typed value is
/// encoded as field 1 of a message, the layout of the wrapper types (`google.protobuf.StringValue`
/// …) and of a message with one `repeated` field;
/// ``StepContext/parameter(_:as:)-(_,ScalarParameter.Type)`` decodes it.
public protocol ScalarParameter: Sendable {
  /// The parameter type name, e.g. `string`.
  static var parameterType: String { get }
  /// Decodes the typed value (nil: not one of this type).
  init?(parameterBytes: [UInt8])
  /// Decodes one element from the payload of a field record of wire type `wire` (without its tag).
  init?(fieldPayload: ArraySlice<UInt8>, wire: UInt8)
}

/// A single value: the last field-1 record wins, as in protobuf; none is the type's zero.
public protocol SingleScalarParameter: ScalarParameter {
  static var zero: Self { get }
}

extension SingleScalarParameter {
  public init?(parameterBytes: [UInt8]) {
    var reader = WireReader(bytes: parameterBytes[...])
    var value = Self.zero
    while !reader.isAtEnd {
      guard let (number, wire, payload) = reader.record() else { return nil }
      guard number == 1 else { continue }
      guard let decoded = Self(fieldPayload: payload, wire: wire) else { return nil }
      value = decoded
    }
    self = value
  }
}

package enum ScalarParameterTypes {
  static let kinds: [String: Google_Protobuf_FieldDescriptorProto.TypeEnum] = [
    "string": .string, "int64": .int64, "int32": .int32, "uint64": .uint64, "uint32": .uint32, "double": .double,
    "float": .float, "bool": .bool, "bytes": .bytes,
  ]

  /// The field a scalar parameter type validates as (number 1), or nil when `type` is a message.
  package static func field(for type: String) -> Google_Protobuf_FieldDescriptorProto? {
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

extension String: SingleScalarParameter {
  public static var parameterType: String { "string" }
  public static var zero: String { "" }
  public init?(fieldPayload: ArraySlice<UInt8>, wire: UInt8) {
    guard wire == 2, let text = String(validating: fieldPayload, as: UTF8.self) else { return nil }
    self = text
  }
}

extension Data: SingleScalarParameter {
  public static var parameterType: String { "bytes" }
  public static var zero: Data { Data() }
  public init?(fieldPayload: ArraySlice<UInt8>, wire: UInt8) {
    guard wire == 2 else { return nil }
    self = Data(fieldPayload)
  }
}

extension Int64: VarintScalarParameter {
  public static var parameterType: String { "int64" }
}

extension Int32: VarintScalarParameter {
  public static var parameterType: String { "int32" }
}

extension UInt64: VarintScalarParameter {
  public static var parameterType: String { "uint64" }
}

extension UInt32: VarintScalarParameter {
  public static var parameterType: String { "uint32" }
}

/// An integer parameter: a varint on the wire, whose low bits are the value (a negative `int32` is
/// sign-extended to ten bytes, as protobuf writes it).
public protocol VarintScalarParameter: SingleScalarParameter, FixedWidthInteger {}

extension VarintScalarParameter {
  public init?(fieldPayload: ArraySlice<UInt8>, wire: UInt8) {
    guard let value = WireReader.varint(fieldPayload, wire: wire) else { return nil }
    self.init(truncatingIfNeeded: value)
  }
}

extension Bool: SingleScalarParameter {
  public static var parameterType: String { "bool" }
  public static var zero: Bool { false }
  public init?(fieldPayload: ArraySlice<UInt8>, wire: UInt8) {
    guard let value = WireReader.varint(fieldPayload, wire: wire) else { return nil }
    self = value != 0
  }
}

extension Double: SingleScalarParameter {
  public static var parameterType: String { "double" }
  public init?(fieldPayload: ArraySlice<UInt8>, wire: UInt8) {
    guard wire == 1, fieldPayload.count == 8 else { return nil }
    self = Double(bitPattern: WireReader.littleEndian(fieldPayload))
  }
}

extension Float: SingleScalarParameter {
  public static var parameterType: String { "float" }
  public init?(fieldPayload: ArraySlice<UInt8>, wire: UInt8) {
    guard wire == 5, fieldPayload.count == 4 else { return nil }
    self = Float(bitPattern: UInt32(truncatingIfNeeded: WireReader.littleEndian(fieldPayload)))
  }
}

extension Array: ScalarParameter where Element: SingleScalarParameter {
  public static var parameterType: String { "repeated \(Element.parameterType)" }

  /// Field 1, repeated: packed (numbers, booleans: one length-delimited record of payloads) or one
  /// record per element (strings, bytes, and numbers from encoders that do not pack).
  public init?(parameterBytes: [UInt8]) {
    var reader = WireReader(bytes: parameterBytes[...])
    var elements: [Element] = []
    while !reader.isAtEnd {
      guard let (number, wire, payload) = reader.record() else { return nil }
      guard number == 1 else { continue }
      if wire == 2, let elementWire = Element.packedWire {
        var packed = WireReader(bytes: payload)
        while !packed.isAtEnd {
          guard let element = packed.payload(wire: elementWire),
            let value = Element(fieldPayload: element, wire: elementWire)
          else { return nil }
          elements.append(value)
        }
      } else {
        guard let value = Element(fieldPayload: payload, wire: wire) else { return nil }
        elements.append(value)
      }
    }
    self = elements
  }

  public init?(fieldPayload: ArraySlice<UInt8>, wire: UInt8) { nil }
}

extension SingleScalarParameter {
  /// The wire type of each element of a packed list of this type; nil: never packed.
  static var packedWire: UInt8? {
    switch parameterType {
    case "string", "bytes": nil
    case "double": 1
    case "float": 5
    default: 0
    }
  }
}

extension SingleScalarParameter where Self: Numeric {
  public static var zero: Self { 0 }
}

/// Reads protobuf wire records.
struct WireReader {
  let bytes: ArraySlice<UInt8>
  var offset: Int

  init(bytes: ArraySlice<UInt8>) {
    self.bytes = bytes
    offset = bytes.startIndex
  }

  init(bytes: [UInt8]) { self.init(bytes: bytes[...]) }

  var isAtEnd: Bool { offset >= bytes.endIndex }

  /// ``payload(wire:)`` as an array, for the descriptor-driven decoder.
  mutating func payload(wire: UInt64) -> [UInt8]? {
    payload(wire: UInt8(truncatingIfNeeded: wire)).map(Array.init)
  }

  mutating func varint() -> UInt64? {
    var value: UInt64 = 0
    var shift: UInt64 = 0
    while offset < bytes.endIndex, shift < 64 {
      let byte = bytes[offset]
      offset += 1
      value |= UInt64(byte & 0x7F) << shift
      if byte & 0x80 == 0 { return value }
      shift += 7
    }
    return nil
  }

  /// The next record: its field number, wire type and payload (without the tag).
  mutating func record() -> (number: UInt64, wire: UInt8, payload: ArraySlice<UInt8>)? {
    guard let tag = varint(), let payload = payload(wire: UInt8(tag & 7)) else { return nil }
    return (tag >> 3, UInt8(tag & 7), payload)
  }

  /// A record's payload without its tag: the varint's bytes, 8 or 4 fixed bytes, or a length-delimited body.
  mutating func payload(wire: UInt8) -> ArraySlice<UInt8>? {
    let start = offset
    switch wire {
    case 0:
      guard varint() != nil else { return nil }
      return bytes[start..<offset]
    case 1, 5:
      let size = wire == 1 ? 8 : 4
      guard offset + size <= bytes.endIndex else { return nil }
      offset += size
      return bytes[start..<offset]
    case 2:
      guard let length = varint(), length <= UInt64(bytes.endIndex - offset) else { return nil }
      defer { offset += Int(length) }
      return bytes[offset..<offset + Int(length)]
    default:
      return nil
    }
  }

  /// The value of a varint payload (wire type 0) that is exactly one varint.
  static func varint(_ payload: ArraySlice<UInt8>, wire: UInt8) -> UInt64? {
    guard wire == 0 else { return nil }
    var reader = WireReader(bytes: payload)
    guard let value = reader.varint(), reader.isAtEnd else { return nil }
    return value
  }

  /// A fixed-width little-endian payload (wire types 1 and 5) as an integer.
  static func littleEndian(_ payload: ArraySlice<UInt8>) -> UInt64 {
    payload.reversed().reduce(0) { $0 << 8 | UInt64($1) }
  }
}
