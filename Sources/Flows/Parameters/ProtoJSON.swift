import Foundation
import SwiftProtobuf

/// Turns JSON into protobuf binary for any message type of a ``DescriptorPool``, following the
/// proto3 JSON mapping, and reports *every* problem with its path.
///
/// Accepts proto field names and lowerCamel JSON names; 64-bit integers as numbers or strings;
/// enums by name or number; bytes as base64; `null` for "not set". The bytes are canonical
/// (fields in number order, proto3 defaults omitted), the same as SwiftProtobuf writes.
struct ProtoJSON {
  let pool: DescriptorPool
  var problems: [String] = []

  init(pool: DescriptorPool) { self.pool = pool }

  /// The message's binary encoding and its JSON with proto field names; nil where a problem was
  /// recorded.
  mutating func message(_ json: JSONValue, type: String, path: String) -> (bytes: [UInt8], json: JSONValue)? {
    if let wellKnown = Self.wellKnownTypes[Self.typeLabel(type)] {
      return self.wellKnown(json, as: wellKnown, path: path)
    }
    guard let descriptor = pool.message(type) else {
      problems.append(
        "\(path): the type \(Self.typeLabel(type)) is not in the deployment's descriptor set (build it with protoc --include_imports)"
      )
      return nil
    }
    guard case .object(let members) = json else {
      problems.append("\(path): expected an object (\(Self.typeLabel(type))), got \(json.described)")
      return nil
    }
    var encoded: [(number: Int32, bytes: [UInt8])] = []
    var canonical: [JSONValue.Member] = []
    var oneofSet: [Int32: String] = [:]
    var seen: [Int32: String] = [:]
    var ok = true
    for member in members {
      let fieldPath = "\(path).\(member.key)"
      guard let field = descriptor.field.first(where: { $0.name == member.key || $0.jsonName == member.key }) else {
        let names = descriptor.field.map(\.name)
        let suggestion = Self.suggestion(for: member.key, among: names + descriptor.field.map(\.jsonName))
          .map { name in descriptor.field.first { $0.name == name || $0.jsonName == name }!.name }
        if let suggestion {
          problems.append("\(fieldPath): unknown field; did you mean \(suggestion)?")
        } else {
          problems.append(
            "\(fieldPath): unknown field; \(Self.typeLabel(type)) has: \(names.isEmpty ? "no fields" : names.joined(separator: ", "))"
          )
        }
        ok = false
        continue
      }
      if let other = seen[field.number] {
        problems.append("\(path).\(field.name): given twice (as \(other) and \(member.key))")
        ok = false
        continue
      }
      seen[field.number] = member.key
      if case .null = member.value { continue }
      if field.hasOneofIndex, !field.proto3Optional {
        if let other = oneofSet[field.oneofIndex] {
          problems.append("\(path): \(other) and \(field.name) are alternatives (a oneof); give only one")
          ok = false
          continue
        }
        oneofSet[field.oneofIndex] = field.name
      }
      let fieldPath2 = "\(path).\(field.name)"
      guard let value = self.field(member.value, field: field, path: fieldPath2) else {
        ok = false
        continue
      }
      if !value.bytes.isEmpty || field.hasOneofIndex { encoded.append((field.number, value.bytes)) }
      canonical.append(JSONValue.Member(field.name, value.json))
    }
    guard ok else { return nil }
    var bytes: [UInt8] = []
    for item in encoded.enumerated().sorted(by: { ($0.element.number, $0.offset) < ($1.element.number, $1.offset) }) {
      bytes += item.element.bytes
    }
    return (bytes, .object(canonical))
  }

  /// The field's encoded bytes (tags included), or nil after recording a problem.
  mutating func field(_ json: JSONValue, field: Google_Protobuf_FieldDescriptorProto, path: String)
    -> (bytes: [UInt8], json: JSONValue)?
  {
    if let entry = pool.mapEntry(of: field) {
      guard case .object(let members) = json else {
        problems.append("\(path): expected an object (a map), got \(json.described)")
        return nil
      }
      let keyField = entry.field.first { $0.number == 1 }!
      let valueField = entry.field.first { $0.number == 2 }!
      var bytes: [UInt8] = []
      var ok = true
      for member in members {
        let key: JSONValue =
          keyField.type == .string || keyField.type == .bool ? .string(member.key) : .string(member.key)
        let keyValue =
          keyField.type == .bool
          ? (member.key == "true" ? (Self.tag(1, wire: 0) + [1]) : member.key == "false" ? [] : nil)
          : scalar(key, field: keyField, path: "\(path)[\(JSONValue.quoted(member.key))]", singular: true)?.bytes
        let valueBytes = singular(
          member.value, field: valueField, path: "\(path)[\(JSONValue.quoted(member.key))]", keepDefault: false)
        guard let keyValue, let valueBytes else {
          if keyField.type == .bool, member.key != "true", member.key != "false" {
            problems.append("\(path)[\(JSONValue.quoted(member.key))]: a map key must be true or false")
          }
          ok = false
          continue
        }
        let entryBytes = keyValue + valueBytes.bytes
        bytes += Self.tag(field.number, wire: 2) + Self.varint(UInt64(entryBytes.count)) + entryBytes
      }
      return ok ? (bytes, json) : nil
    }
    if field.label == .repeated {
      guard case .array(let items) = json else {
        problems.append("\(path): expected an array of \(Self.kind(field)), got \(json.described)")
        return nil
      }
      var bytes: [UInt8] = []
      var packed: [UInt8] = []
      var canonical: [JSONValue] = []
      var ok = true
      let packable = ![.string, .bytes, .message, .group].contains(field.type)
      for (index, item) in items.enumerated() {
        let itemPath = "\(path)[\(index)]"
        if packable {
          guard let value = scalar(item, field: field, path: itemPath, singular: false) else {
            ok = false
            continue
          }
          packed += value.payload
          canonical.append(value.json)
        } else {
          guard let value = singular(item, field: field, path: itemPath, keepDefault: true) else {
            ok = false
            continue
          }
          bytes += value.bytes
          canonical.append(value.json)
        }
      }
      if packable, !packed.isEmpty {
        bytes = Self.tag(field.number, wire: 2) + Self.varint(UInt64(packed.count)) + packed
      }
      return ok ? (bytes, .array(canonical)) : nil
    }
    return singular(json, field: field, path: path, keepDefault: field.proto3Optional || field.hasOneofIndex)
  }

  /// One value of a field, with its tag; proto3 defaults are left out unless `keepDefault`.
  mutating func singular(
    _ json: JSONValue, field: Google_Protobuf_FieldDescriptorProto, path: String, keepDefault: Bool
  ) -> (bytes: [UInt8], json: JSONValue)? {
    if field.type == .message || field.type == .group {
      guard let nested = message(json, type: field.typeName, path: path) else { return nil }
      return (Self.tag(field.number, wire: 2) + Self.varint(UInt64(nested.bytes.count)) + nested.bytes, nested.json)
    }
    guard let value = scalar(json, field: field, path: path, singular: true) else { return nil }
    if !keepDefault && value.isDefault { return ([], value.json) }
    return (value.bytes, value.json)
  }

  struct Scalar {
    /// With tag (for a singular or unpacked field).
    var bytes: [UInt8]
    /// Without tag (for packing).
    var payload: [UInt8]
    var json: JSONValue
    var isDefault: Bool
  }

  mutating func scalar(_ json: JSONValue, field: Google_Protobuf_FieldDescriptorProto, path: String, singular: Bool)
    -> Scalar?
  {
    func fail(_ expected: String) -> Scalar? {
      problems.append("\(path): expected \(expected), got \(json.described)")
      return nil
    }
    let number = field.number
    func varintValue(_ value: UInt64, json: JSONValue) -> Scalar {
      let payload = Self.varint(value)
      return Scalar(bytes: Self.tag(number, wire: 0) + payload, payload: payload, json: json, isDefault: value == 0)
    }
    switch field.type {
    case .string:
      guard case .string(let text) = json else { return fail("a string") }
      let payload = Array(text.utf8)
      return Scalar(
        bytes: Self.tag(number, wire: 2) + Self.varint(UInt64(payload.count)) + payload, payload: payload, json: json,
        isDefault: text.isEmpty)
    case .bytes:
      guard case .string(let text) = json, let data = Self.base64(text) else { return fail("base64 bytes (a string)") }
      let payload = Array(data)
      return Scalar(
        bytes: Self.tag(number, wire: 2) + Self.varint(UInt64(payload.count)) + payload, payload: payload, json: json,
        isDefault: payload.isEmpty)
    case .bool:
      guard case .bool(let value) = json else { return fail("a boolean (true or false)") }
      return varintValue(value ? 1 : 0, json: json)
    case .int32, .sint32, .sfixed32, .int64, .sint64, .sfixed64, .uint32, .fixed32, .uint64, .fixed64:
      let label = Self.kind(field)
      let signed = [.int32, .sint32, .sfixed32, .int64, .sint64, .sfixed64].contains(field.type)
      let bits = [.int32, .sint32, .sfixed32, .uint32, .fixed32].contains(field.type) ? 32 : 64
      guard let integer = Self.integer(json) else { return fail("an integer (\(label))") }
      let (minimum, maximum): (Int128, Int128) =
        signed ? (-(Int128(1) << (bits - 1)), (Int128(1) << (bits - 1)) - 1) : (0, (Int128(1) << bits) - 1)
      guard integer >= minimum, integer <= maximum else {
        problems.append("\(path): \(integer) is out of range for \(label) (\(minimum) to \(maximum))")
        return nil
      }
      let canonical: JSONValue = bits == 64 ? .string(String(integer)) : .number(String(integer))
      switch field.type {
      case .sint32, .sint64:
        let value = Int64(integer)
        return varintValue(UInt64(bitPattern: (value << 1) ^ (value >> 63)), json: canonical)
      case .sfixed32, .fixed32:
        let raw = UInt32(truncatingIfNeeded: Int64(integer))
        let payload = withUnsafeBytes(of: raw.littleEndian) { Array($0) }
        return Scalar(
          bytes: Self.tag(number, wire: 5) + payload, payload: payload, json: canonical, isDefault: raw == 0)
      case .sfixed64, .fixed64:
        let raw = UInt64(truncatingIfNeeded: integer)
        let payload = withUnsafeBytes(of: raw.littleEndian) { Array($0) }
        return Scalar(
          bytes: Self.tag(number, wire: 1) + payload, payload: payload, json: canonical, isDefault: raw == 0)
      case .int32:
        // Negative int32 values are sign-extended to 64 bits on the wire.
        return varintValue(UInt64(bitPattern: Int64(integer)), json: canonical)
      default:
        return varintValue(UInt64(truncatingIfNeeded: integer), json: canonical)
      }
    case .float, .double:
      let value: Double
      switch json {
      case .number(let text): value = Double(text)!
      case .string("NaN"): value = .nan
      case .string("Infinity"): value = .infinity
      case .string("-Infinity"): value = -.infinity
      case .string(let text) where Double(text) != nil: value = Double(text)!
      default: return fail("a number (\(Self.kind(field)))")
      }
      if field.type == .float {
        guard value.isNaN || value.isInfinite || abs(value) <= Double(Float.greatestFiniteMagnitude) else {
          problems.append("\(path): \(value) is out of range for float")
          return nil
        }
        let payload = withUnsafeBytes(of: Float(value).bitPattern.littleEndian) { Array($0) }
        return Scalar(bytes: Self.tag(number, wire: 5) + payload, payload: payload, json: json, isDefault: value == 0)
      }
      let payload = withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) }
      return Scalar(bytes: Self.tag(number, wire: 1) + payload, payload: payload, json: json, isDefault: value == 0)
    case .enum:
      guard let enumType = pool.enumType(field.typeName) else {
        problems.append("\(path): the enum \(field.typeName) is not in the descriptor set")
        return nil
      }
      let names = enumType.value.map(\.name)
      switch json {
      case .string(let name):
        guard let value = enumType.value.first(where: { $0.name == name }) else {
          let hint = Self.suggestion(for: name, among: names).map { "; did you mean \($0)?" } ?? ""
          problems.append(
            "\(path): \(JSONValue.quoted(name)) is not a value of \(Self.typeLabel(field.typeName))\(hint) (values: \(names.joined(separator: ", ")))"
          )
          return nil
        }
        return varintValue(UInt64(bitPattern: Int64(value.number)), json: json)
      default:
        guard let integer = Self.integer(json), let value = Int32(exactly: integer) else {
          return fail("one of \(names.joined(separator: ", ")) (\(Self.typeLabel(field.typeName)))")
        }
        return varintValue(UInt64(bitPattern: Int64(value)), json: json)
      }
    default:
      problems.append("\(path): fields of type \(field.type) are not supported")
      return nil
    }
  }

  // MARK: Well-known types

  /// The well-known types with a JSON form of their own (proto3 JSON mapping), and what that form is.
  static let wellKnownTypes: [String: (type: any SwiftProtobuf.Message.Type, expected: String)] = [
    "google.protobuf.Timestamp": (
      Google_Protobuf_Timestamp.self, "an RFC 3339 timestamp string such as \"2026-12-01T12:00:00Z\""
    ),
    "google.protobuf.Duration": (Google_Protobuf_Duration.self, "a duration string in seconds such as \"1.5s\""),
    "google.protobuf.Struct": (Google_Protobuf_Struct.self, "a JSON object"),
    "google.protobuf.Value": (Google_Protobuf_Value.self, "any JSON value"),
    "google.protobuf.ListValue": (Google_Protobuf_ListValue.self, "a JSON array"),
    "google.protobuf.FieldMask": (Google_Protobuf_FieldMask.self, "a field mask string such as \"a,b.c\""),
    "google.protobuf.Empty": (Google_Protobuf_Empty.self, "an empty object {}"),
    "google.protobuf.DoubleValue": (Google_Protobuf_DoubleValue.self, "a number"),
    "google.protobuf.FloatValue": (Google_Protobuf_FloatValue.self, "a number"),
    "google.protobuf.Int64Value": (Google_Protobuf_Int64Value.self, "an integer (int64)"),
    "google.protobuf.UInt64Value": (Google_Protobuf_UInt64Value.self, "an integer (uint64)"),
    "google.protobuf.Int32Value": (Google_Protobuf_Int32Value.self, "an integer (int32)"),
    "google.protobuf.UInt32Value": (Google_Protobuf_UInt32Value.self, "an integer (uint32)"),
    "google.protobuf.BoolValue": (Google_Protobuf_BoolValue.self, "a boolean (true or false)"),
    "google.protobuf.StringValue": (Google_Protobuf_StringValue.self, "a string"),
    "google.protobuf.BytesValue": (Google_Protobuf_BytesValue.self, "base64 bytes (a string)"),
  ]

  /// A well-known type from its JSON form, through SwiftProtobuf's own implementation of the mapping.
  mutating func wellKnown(
    _ json: JSONValue, as wellKnown: (type: any SwiftProtobuf.Message.Type, expected: String), path: String
  ) -> (bytes: [UInt8], json: JSONValue)? {
    do {
      let message = try wellKnown.type.init(jsonString: json.text)
      // Map entries (a Struct's fields) in a fixed order: the same JSON must give the same bytes
      // and the same canonical JSON, which an idempotency key compares (make fuzz found two
      // validations of one Struct disagreeing).
      var binary = BinaryEncodingOptions()
      binary.useDeterministicOrdering = true
      let bytes: [UInt8] = try message.serializedBytes(options: binary)
      // SwiftProtobuf writes a Struct's members in its dictionary's order: sorted here.
      return (bytes, Self.sortingMembers(try JSONValue(parsing: try message.jsonString())))
    } catch {
      problems.append("\(path): expected \(wellKnown.expected), got \(json.described)")
      return nil
    }
  }
}
