import Foundation
import SwiftProtobuf

extension DescriptorPool {
  /// `bytes`, an encoded message of type `type`, as JSON (the proto3 JSON mapping, with proto
  /// field names): how the server and the CLI show results of types they never linked. Nil when
  /// the type is not in the pool or the bytes do not decode as it.
  public func json(of bytes: [UInt8], type: String) -> JSONValue? {
    var depth = 0
    return decode(bytes, type: ProtoJSON.typeLabel(type), depth: &depth)
  }

  private func decode(_ bytes: [UInt8], type: String, depth: inout Int) -> JSONValue? {
    if let wellKnown = ProtoJSON.wellKnownTypes[type] {
      guard let message = try? wellKnown.type.init(serializedBytes: bytes),
        let text = try? message.jsonString()
      else { return nil }
      return try? JSONValue(parsing: text)
    }
    guard depth < 64, let descriptor = message(type) else { return nil }
    depth += 1
    defer { depth -= 1 }
    var reader = WireReader(bytes: bytes)
    var singles: [Int32: JSONValue] = [:]
    var lists: [Int32: [JSONValue]] = [:]
    var maps: [Int32: [JSONValue.Member]] = [:]
    while !reader.isAtEnd {
      guard let tag = reader.varint() else { return nil }
      let number = Int32(truncatingIfNeeded: tag >> 3)
      let wire = tag & 7
      guard let payload = reader.payload(wire: wire) else { return nil }
      guard let field = descriptor.field.first(where: { $0.number == number }) else { continue }
      if let entry = mapEntry(of: field) {
        guard let pair = decode(entryOf: entry, payload, depth: &depth) else { return nil }
        maps[number, default: []].append(pair)
      } else if field.label == .repeated {
        if wire == 2, ![.string, .bytes, .message, .group].contains(field.type) {
          var packed = WireReader(bytes: payload)
          let elementWire = Self.wire(of: field.type)
          while !packed.isAtEnd {
            guard let element = packed.payload(wire: elementWire),
              let value = value(of: field, element, wire: elementWire, depth: &depth)
            else { return nil }
            lists[number, default: []].append(value)
          }
        } else {
          guard let value = value(of: field, payload, wire: wire, depth: &depth) else { return nil }
          lists[number, default: []].append(value)
        }
      } else {
        guard let value = value(of: field, payload, wire: wire, depth: &depth) else { return nil }
        singles[number] = value
      }
    }
    var members: [JSONValue.Member] = []
    for field in descriptor.field {
      if let map = maps[field.number] {
        members.append(.init(field.name, .object(map)))
      } else if let list = lists[field.number] {
        members.append(.init(field.name, .array(list)))
      } else if let value = singles[field.number] {
        members.append(.init(field.name, value))
      }
    }
    return .object(members)
  }

  private func decode(
    entryOf entry: Google_Protobuf_DescriptorProto, _ bytes: [UInt8], depth: inout Int
  ) -> JSONValue.Member? {
    guard case .object(let members)? = decode(bytes, typeOfEntry: entry, depth: &depth) else { return nil }
    let key: String =
      switch members.first(where: { $0.key == "key" })?.value {
      case .string(let text)?: text
      case .number(let text)?: text
      case .bool(let value)?: value ? "true" : "false"
      default:
        entry.field.first(where: { $0.number == 1 }).map { $0.type == .bool ? "false" : $0.type == .string ? "" : "0" }
          ?? ""
      }
    let valueField = entry.field.first { $0.number == 2 }
    let value =
      members.first(where: { $0.key == "value" })?.value
      ?? (valueField.map { $0.type == .message ? .object([]) : Self.defaultValue(of: $0) } ?? .null)
    return .init(key, value)
  }

  /// A map entry has no name in the pool's table; decoded with its own descriptor.
  private func decode(_ bytes: [UInt8], typeOfEntry entry: Google_Protobuf_DescriptorProto, depth: inout Int)
    -> JSONValue?
  {
    var reader = WireReader(bytes: bytes)
    var members: [JSONValue.Member] = []
    while !reader.isAtEnd {
      guard let tag = reader.varint(), let payload = reader.payload(wire: tag & 7) else { return nil }
      guard let field = entry.field.first(where: { UInt64($0.number) == tag >> 3 }) else { continue }
      guard let value = value(of: field, payload, wire: tag & 7, depth: &depth) else { return nil }
      members.removeAll { $0.key == field.name }
      members.append(.init(field.name, value))
    }
    return .object(members)
  }

  private func value(
    of field: Google_Protobuf_FieldDescriptorProto, _ payload: [UInt8], wire: UInt64, depth: inout Int
  ) -> JSONValue? {
    func varint() -> UInt64? {
      var reader = WireReader(bytes: payload)
      return reader.varint()
    }
    func fixed<T: FixedWidthInteger>(_: T.Type) -> T? {
      guard payload.count == MemoryLayout<T>.size else { return nil }
      return payload.withUnsafeBytes { $0.loadUnaligned(as: T.self) }.littleEndian
    }
    switch field.type {
    case .string: return .string(String(decoding: payload, as: UTF8.self))
    case .bytes: return .string(Data(payload).base64EncodedString())
    case .message, .group: return decode(payload, type: ProtoJSON.typeLabel(field.typeName), depth: &depth)
    case .bool: return varint().map { .bool($0 != 0) }
    case .int32: return varint().map { .number(String(Int32(truncatingIfNeeded: Int64(bitPattern: $0)))) }
    case .int64: return varint().map { .string(String(Int64(bitPattern: $0))) }
    case .uint32: return varint().map { .number(String(UInt32(truncatingIfNeeded: $0))) }
    case .uint64: return varint().map { .string(String($0)) }
    case .sint32:
      return varint().map { .number(String(Int32(truncatingIfNeeded: Int64(bitPattern: ($0 >> 1) ^ (0 &- ($0 & 1)))))) }
    case .sint64: return varint().map { .string(String(Int64(bitPattern: ($0 >> 1) ^ (0 &- ($0 & 1))))) }
    case .fixed32: return fixed(UInt32.self).map { .number(String($0)) }
    case .sfixed32: return fixed(Int32.self).map { .number(String($0)) }
    case .fixed64: return fixed(UInt64.self).map { .string(String($0)) }
    case .sfixed64: return fixed(Int64.self).map { .string(String($0)) }
    case .double: return fixed(UInt64.self).map { Self.number(Double(bitPattern: $0)) }
    case .float: return fixed(UInt32.self).map { Self.number(Double(Float(bitPattern: $0))) }
    case .enum:
      guard let raw = varint() else { return nil }
      let number = Int32(truncatingIfNeeded: Int64(bitPattern: raw))
      if let name = enumType(field.typeName)?.value.first(where: { $0.number == number })?.name { return .string(name) }
      return .number(String(number))
    @unknown default: return nil
    }
  }

  static func number(_ value: Double) -> JSONValue {
    if value.isNaN { return .string("NaN") }
    if value.isInfinite { return .string(value > 0 ? "Infinity" : "-Infinity") }
    if value == value.rounded(), abs(value) < 1e15 { return .number(String(Int64(value))) }
    return .number("\(value)")
  }

  static func wire(of type: Google_Protobuf_FieldDescriptorProto.TypeEnum) -> UInt64 {
    switch type {
    case .double, .fixed64, .sfixed64: 1
    case .float, .fixed32, .sfixed32: 5
    default: 0
    }
  }

  static func defaultValue(of field: Google_Protobuf_FieldDescriptorProto) -> JSONValue {
    switch field.type {
    case .string, .bytes: .string("")
    case .bool: .bool(false)
    case .int64, .uint64, .sint64, .fixed64, .sfixed64: .string("0")
    default: .number("0")
    }
  }
}
