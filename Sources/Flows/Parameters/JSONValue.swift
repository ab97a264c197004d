/// A JSON value as written: object members keep their order, and numbers keep their text, so a
/// validator can say exactly what it got (`the number 5`, `the string "5"`).
public indirect enum JSONValue: Sendable, Hashable {
  case null
  case bool(Bool)
  /// The number's text as written, e.g. `5`, `-1.5e3`.
  case number(String)
  case string(String)
  case array([JSONValue])
  case object([Member])

  /// An object's member: its key and value, in the object's order.
  public struct Member: Sendable, Hashable {
    public var key: String
    public var value: JSONValue

    public init(_ key: String, _ value: JSONValue) {
      self.key = key
      self.value = value
    }
  }

  /// Parses one JSON value (RFC 8259). Errors give the line and column.
  public init(parsing text: String) throws(JSONSyntaxError) {
    var parser = JSONParser(Array(text.utf8))
    parser.skipWhitespace()
    self = try parser.value(depth: 0)
    parser.skipWhitespace()
    guard parser.isAtEnd else { throw parser.error("unexpected text after the JSON value") }
  }

  /// How an error names this value: `the number 5`, `the string "b"`, `an object`, `null` …
  public var described: String {
    switch self {
    case .null: "null"
    case .bool(let value): "the boolean \(value)"
    case .number(let text): "the number \(text.count > 40 ? text.prefix(40) + "…" : text)"
    case .string(let text): "the string \(Self.quoted(text, limit: 40))"
    case .array: "an array"
    case .object: "an object"
    }
  }

  /// Compact JSON text, members in their order.
  public var text: String {
    var out = ""
    write(to: &out)
    return out
  }

  /// Indented JSON text, two spaces per level.
  public var prettyText: String {
    var out = ""
    writePretty(to: &out, indent: "")
    return out
  }

  func writePretty(to out: inout String, indent: String) {
    let inner = indent + "  "
    switch self {
    case .array(let items) where !items.isEmpty:
      out += "[\n"
      for (index, item) in items.enumerated() {
        out += inner
        item.writePretty(to: &out, indent: inner)
        out += index == items.count - 1 ? "\n" : ",\n"
      }
      out += indent + "]"
    case .object(let members) where !members.isEmpty:
      out += "{\n"
      for (index, member) in members.enumerated() {
        out += inner + Self.quoted(member.key) + ": "
        member.value.writePretty(to: &out, indent: inner)
        out += index == members.count - 1 ? "\n" : ",\n"
      }
      out += indent + "}"
    default:
      write(to: &out)
    }
  }

  func write(to out: inout String) {
    switch self {
    case .null: out += "null"
    case .bool(let value): out += value ? "true" : "false"
    case .number(let text): out += text
    case .string(let text): out += Self.quoted(text)
    case .array(let items):
      out += "["
      for (index, item) in items.enumerated() {
        if index > 0 { out += "," }
        item.write(to: &out)
      }
      out += "]"
    case .object(let members):
      out += "{"
      for (index, member) in members.enumerated() {
        if index > 0 { out += "," }
        out += Self.quoted(member.key)
        out += ":"
        member.value.write(to: &out)
      }
      out += "}"
    }
  }

  /// `text` as a JSON string literal, cut after `limit` characters.
  public static func quoted(_ text: String, limit: Int = .max) -> String {
    var out = "\""
    for (index, scalar) in text.unicodeScalars.enumerated() {
      if index == limit {
        out += "…"
        break
      }
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case _ where scalar.value < 0x20:
        let hex = String(scalar.value, radix: 16)
        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out + "\""
  }
}

/// Malformed JSON, with where.
public struct JSONSyntaxError: Error, Sendable, Hashable, CustomStringConvertible {
  public var message: String
  public var line: Int
  public var column: Int

  public var description: String { "\(message) at line \(line), column \(column)" }
}

struct JSONParser {
  let bytes: [UInt8]
  var offset = 0
  static let maximumDepth = 128

  init(_ bytes: [UInt8]) { self.bytes = bytes }

  var isAtEnd: Bool { offset >= bytes.count }

  func error(_ message: String) -> JSONSyntaxError {
    var line = 1
    var column = 1
    for byte in bytes[..<min(offset, bytes.count)] {
      if byte == UInt8(ascii: "\n") {
        line += 1
        column = 1
      } else if byte & 0xC0 != 0x80 {
        column += 1
      }
    }
    return JSONSyntaxError(message: message, line: line, column: column)
  }

  mutating func skipWhitespace() {
    while offset < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[offset]) { offset += 1 }
  }

  mutating func value(depth: Int) throws(JSONSyntaxError) -> JSONValue {
    guard depth < Self.maximumDepth else { throw error("JSON nested deeper than \(Self.maximumDepth) levels") }
    guard offset < bytes.count else { throw error("the JSON ends where a value was expected") }
    switch bytes[offset] {
    case UInt8(ascii: "{"): return try object(depth: depth)
    case UInt8(ascii: "["): return try array(depth: depth)
    case UInt8(ascii: "\""): return .string(try string())
    case UInt8(ascii: "t"): return try literal("true", .bool(true))
    case UInt8(ascii: "f"): return try literal("false", .bool(false))
    case UInt8(ascii: "n"): return try literal("null", .null)
    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
    case UInt8(ascii: "'"): throw error("JSON strings use double quotes, not single quotes")
    default:
      throw error("expected a JSON value (an object, array, string, number, true, false or null)")
    }
  }

  mutating func literal(_ word: String, _ value: JSONValue) throws(JSONSyntaxError) -> JSONValue {
    let utf8 = Array(word.utf8)
    guard offset + utf8.count <= bytes.count, Array(bytes[offset..<offset + utf8.count]) == utf8 else {
      throw error("expected a JSON value (strings must be quoted)")
    }
    offset += utf8.count
    return value
  }

  mutating func object(depth: Int) throws(JSONSyntaxError) -> JSONValue {
    offset += 1
    var members: [JSONValue.Member] = []
    skipWhitespace()
    if offset < bytes.count, bytes[offset] == UInt8(ascii: "}") {
      offset += 1
      return .object(members)
    }
    while true {
      skipWhitespace()
      guard offset < bytes.count, bytes[offset] == UInt8(ascii: "\"") else {
        throw error(isAtEnd ? "the JSON ends inside an object" : "expected a quoted member name")
      }
      let key = try string()
      skipWhitespace()
      guard offset < bytes.count, bytes[offset] == UInt8(ascii: ":") else {
        throw error("expected ':' after \"\(key)\"")
      }
      offset += 1
      skipWhitespace()
      let value = try value(depth: depth + 1)
      if members.contains(where: { $0.key == key }) { throw error("the member \"\(key)\" appears twice") }
      members.append(JSONValue.Member(key, value))
      skipWhitespace()
      guard offset < bytes.count else { throw error("the JSON ends inside an object") }
      if bytes[offset] == UInt8(ascii: ",") {
        offset += 1
        continue
      }
      guard bytes[offset] == UInt8(ascii: "}") else { throw error("expected ',' or '}' in an object") }
      offset += 1
      return .object(members)
    }
  }

  mutating func array(depth: Int) throws(JSONSyntaxError) -> JSONValue {
    offset += 1
    var items: [JSONValue] = []
    skipWhitespace()
    if offset < bytes.count, bytes[offset] == UInt8(ascii: "]") {
      offset += 1
      return .array(items)
    }
    while true {
      skipWhitespace()
      items.append(try value(depth: depth + 1))
      skipWhitespace()
      guard offset < bytes.count else { throw error("the JSON ends inside an array") }
      if bytes[offset] == UInt8(ascii: ",") {
        offset += 1
        continue
      }
      guard bytes[offset] == UInt8(ascii: "]") else { throw error("expected ',' or ']' in an array") }
      offset += 1
      return .array(items)
    }
  }

  mutating func number() throws(JSONSyntaxError) -> JSONValue {
    let start = offset
    func digits() -> Int {
      let first = offset
      while offset < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[offset]) { offset += 1 }
      return offset - first
    }
    if bytes[offset] == UInt8(ascii: "-") { offset += 1 }
    let integer = offset
    guard digits() > 0 else { throw error("a malformed number") }
    if bytes[integer] == UInt8(ascii: "0"), offset - integer > 1 { throw error("numbers have no leading zeros") }
    if offset < bytes.count, bytes[offset] == UInt8(ascii: ".") {
      offset += 1
      guard digits() > 0 else { throw error("a malformed number") }
    }
    if offset < bytes.count, bytes[offset] == UInt8(ascii: "e") || bytes[offset] == UInt8(ascii: "E") {
      offset += 1
      if offset < bytes.count, bytes[offset] == UInt8(ascii: "+") || bytes[offset] == UInt8(ascii: "-") { offset += 1 }
      guard digits() > 0 else { throw error("a malformed number") }
    }
    return .number(String(decoding: bytes[start..<offset], as: UTF8.self))
  }

  mutating func string() throws(JSONSyntaxError) -> String {
    offset += 1
    var scalars = String.UnicodeScalarView()
    var run = offset
    func flush(_ end: Int) {
      scalars.append(contentsOf: String(decoding: bytes[run..<end], as: UTF8.self).unicodeScalars)
    }
    while true {
      guard offset < bytes.count else { throw error("the JSON ends inside a string") }
      let byte = bytes[offset]
      if byte == UInt8(ascii: "\"") {
        flush(offset)
        offset += 1
        return String(scalars)
      }
      if byte < 0x20 { throw error("a control character inside a string (escape it)") }
      if byte != UInt8(ascii: "\\") {
        offset += 1
        continue
      }
      flush(offset)
      offset += 1
      guard offset < bytes.count else { throw error("the JSON ends inside a string") }
      let escape = bytes[offset]
      offset += 1
      switch escape {
      case UInt8(ascii: "\""): scalars.append("\"")
      case UInt8(ascii: "\\"): scalars.append("\\")
      case UInt8(ascii: "/"): scalars.append("/")
      case UInt8(ascii: "b"): scalars.append("\u{08}")
      case UInt8(ascii: "f"): scalars.append("\u{0C}")
      case UInt8(ascii: "n"): scalars.append("\n")
      case UInt8(ascii: "r"): scalars.append("\r")
      case UInt8(ascii: "t"): scalars.append("\t")
      case UInt8(ascii: "u"):
        var code = try hex4()
        if (0xD800..<0xDC00).contains(code) {
          guard offset + 1 < bytes.count, bytes[offset] == UInt8(ascii: "\\"), bytes[offset + 1] == UInt8(ascii: "u")
          else { throw error("an unpaired surrogate in a \\u escape") }
          offset += 2
          let low = try hex4()
          guard (0xDC00..<0xE000).contains(low) else { throw error("an unpaired surrogate in a \\u escape") }
          code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
        }
        guard let scalar = Unicode.Scalar(code) else { throw error("an invalid \\u escape") }
        scalars.append(scalar)
      default:
        offset -= 1
        throw error("an invalid escape in a string")
      }
      run = offset
    }
  }

  mutating func hex4() throws(JSONSyntaxError) -> UInt32 {
    guard offset + 4 <= bytes.count,
      let value = UInt32(String(decoding: bytes[offset..<offset + 4], as: UTF8.self), radix: 16)
    else { throw error("a \\u escape needs four hex digits") }
    offset += 4
    return value
  }
}
