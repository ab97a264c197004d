import Foundation
import SwiftProtobuf

// Wire-format encoding, integers and base64 from JSON, and the suggestions that name a field the user may have meant.
extension ProtoJSON {
  // MARK: Helpers

  /// `value` with every object's members sorted by key (a map's JSON, in one order whatever its
  /// insertion order was); as deep as the JSON, which the parser bounds.
  static func sortingMembers(_ value: JSONValue) -> JSONValue {
    switch value {
    case .object(let members):
      return .object(members.sorted { $0.key < $1.key }.map { .init($0.key, sortingMembers($0.value)) })
    case .array(let items): return .array(items.map(sortingMembers))
    default: return value
    }
  }

  static func integer(_ json: JSONValue) -> Int128? {
    let text: String
    switch json {
    case .number(let value): text = value
    case .string(let value): text = value
    default: return nil
    }
    if let value = Int128(text) { return value }
    // `1e3` and `2.0` are integers too when they have no fraction.
    guard let double = Double(text), double.rounded() == double, abs(double) < 1.8e19 else { return nil }
    return Int128(double)
  }

  static func base64(_ text: String) -> Data? {
    var normalized = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    while normalized.count % 4 != 0 { normalized += "=" }
    return Data(base64Encoded: normalized)
  }

  static func tag(_ number: Int32, wire: UInt64) -> [UInt8] { varint(UInt64(number) << 3 | wire) }

  static func varint(_ value: UInt64) -> [UInt8] {
    var value = value
    var bytes: [UInt8] = []
    while value >= 0x80 {
      bytes.append(UInt8(value & 0x7F) | 0x80)
      value >>= 7
    }
    bytes.append(UInt8(value))
    return bytes
  }

  /// `string`, `int64`, `gps.v1.DataInfo` … as errors name a field's kind.
  static func kind(_ field: Google_Protobuf_FieldDescriptorProto) -> String {
    switch field.type {
    case .message, .group, .enum: typeLabel(field.typeName)
    default: "\(field.type)".lowercased()
    }
  }

  static func typeLabel(_ name: String) -> String { name.hasPrefix(".") ? String(name.dropFirst()) : name }

  /// The closest name within a small edit distance, for "did you mean".
  static func suggestion(for name: String, among candidates: [String]) -> String? {
    let lowered = name.lowercased()
    var best: (name: String, distance: Int)?
    for candidate in candidates {
      let distance = editDistance(lowered, candidate.lowercased())
      if distance <= max(2, candidate.count / 3), distance < (best?.distance ?? .max) { best = (candidate, distance) }
    }
    return best?.name
  }

  static func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a)
    let b = Array(b)
    if a.isEmpty { return b.count }
    var previous = Array(0...b.count)
    for i in 1...a.count {
      var current = [i] + Array(repeating: 0, count: b.count)
      for j in 1...max(b.count, 1) where j <= b.count {
        current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
      }
      previous = current
    }
    return previous[b.count]
  }
}
