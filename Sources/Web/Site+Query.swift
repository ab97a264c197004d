import Control
import Flows
import Foundation
import GPSModel
import GRPCCore
import HTTPTypes
import Hummingbird
import NIOCore
import Queue
import SwiftProtobuf
import Synchronization

// What a request carries: its JSON body and its query values, each checked with one clear answer.
extension Site {
  // MARK: Bodies

  /// A request's body as JSON. Text that is not UTF-8 is refused naming the field that holds it:
  /// replaced by U+FFFD it would be stored as something the client never sent (gRPC refuses it too).
  static func json(_ body: ByteBuffer) throws -> JSONValue {
    let bytes = body.readableBytesView
    let text = String(decoding: bytes, as: UTF8.self)
    let value: JSONValue
    do {
      value = try JSONValue(parsing: text)
    } catch {
      throw WebError.badRequest("the body is not JSON: \(error)")
    }
    if String(validating: bytes, as: UTF8.self) == nil {
      let offset = Self.firstInvalidUTF8(bytes)
      let path = Self.pathOfReplacement(in: value).map { "at \($0) " } ?? ""
      throw WebError.badRequest(
        "the body is not valid UTF-8: \(path)(byte \(offset)); send text as UTF-8, and binary data as base64")
    }
    return value
  }

  /// The offset of the first byte that does not begin or continue a valid UTF-8 sequence.
  static func firstInvalidUTF8(_ bytes: some Collection<UInt8>) -> Int {
    var decoder = UTF8()
    var iterator = bytes.makeIterator()
    var offset = 0
    while true {
      switch decoder.decode(&iterator) {
      case .scalarValue(let scalar): offset += UTF8.width(scalar)
      case .emptyInput, .error: return offset
      }
    }
  }

  /// The path of the first string or key holding U+FFFD (where invalid UTF-8 was replaced).
  static func pathOfReplacement(in value: JSONValue, path: String = "") -> String? {
    var pending: [(JSONValue, String)] = [(value, path)]
    while let (value, path) = pending.popLast() {
      switch value {
      case .string(let text) where text.unicodeScalars.contains("\u{FFFD}"): return path.isEmpty ? "the body" : path
      case .array(let items):
        for (index, item) in items.enumerated().reversed() { pending.append((item, "\(path)[\(index)]")) }
      case .object(let members):
        for member in members.reversed() {
          let child = path.isEmpty ? member.key : "\(path).\(member.key)"
          if member.key.unicodeScalars.contains("\u{FFFD}") { return child }
          pending.append((member.value, child))
        }
      default: break
      }
    }
    return nil
  }

  // MARK: Query values

  /// A page size: any whole number from 1; larger than `maximum` gets `maximum`.
  static func limit(_ text: String?, default value: UInt32 = 100, maximum: UInt32 = 1000) throws -> UInt32 {
    guard let text else { return value }
    let digits = text.hasPrefix("+") ? text.dropFirst() : Substring(text)
    guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), digits.contains(where: { $0 != "0" })
    else {
      throw WebError.badRequest("limit: expected a whole number from 1, got \(JSONValue.quoted(text, limit: 100))")
    }
    return UInt32(min(UInt64(digits) ?? .max, UInt64(maximum)))
  }

  /// The largest sequence a request may name: the next one (`after + 1`) must still be a number.
  static let maximumSequence = UInt64(Int64.max)

  /// A sequence number, from 0 to ``maximumSequence``; nil when absent.
  static func number(_ text: String?, _ name: String) throws -> UInt64? {
    guard let text else { return nil }
    guard text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
      let value = UInt64(text), value <= maximumSequence
    else {
      throw WebError.badRequest(
        "\(name): expected a sequence number from 0 to \(maximumSequence), got \(JSONValue.quoted(text, limit: 100))")
    }
    return value
  }

  /// A time given as RFC 3339 (`2026-12-01T12:00:00Z`) or microseconds since the epoch; 0 when absent.
  static func time(_ text: String?, _ name: String) throws -> Int64 {
    guard let text, !text.isEmpty else { return 0 }
    // Microseconds as the document says: up to 18 digits, no sign.
    if text.count <= 18, text.allSatisfy({ $0.isASCII && $0.isNumber }), let micros = Int64(text) { return micros }
    guard let time = parseTime(text) else {
      throw WebError.badRequest(
        "\(name): expected an RFC 3339 time such as 2026-12-01T12:00:00Z, got \(JSONValue.quoted(text, limit: 100))")
    }
    return time.micros
  }

  static func parseTime(_ text: String) -> Timestamp? {
    // A browser's datetime-local value has no zone and maybe no seconds: taken as UTC.
    var candidate = text
    if candidate.count == 16 { candidate += ":00" }
    if candidate.count == 19 { candidate += "Z" }
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    guard let date = formatter.date(from: candidate) ?? ISO8601DateFormatter().date(from: candidate) else {
      return nil
    }
    return Timestamp(date)
  }

  static func parseDuration(_ text: String) -> Duration? {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)]
    for (suffix, scale) in units where text.hasSuffix(suffix) {
      // At most a million days: beyond the clock's range it would be a crash.
      guard let value = Double(text.dropLast(suffix.count)), value >= 0, value * scale <= 86_400_000_000 else {
        return nil
      }
      return .milliseconds(Int64(value * scale * 1000))
    }
    return nil
  }
}
