import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// HTML built as text, with every value that is not the page's own escaped: user strings
/// (parameters, tags, errors, results, names) render as text, never as markup.
struct HTML: Sendable {
  private(set) var text = ""

  init(_ trusted: String = "") { text = trusted }

  /// Text escaped for element content and for quoted attribute values.
  static func escape(_ value: String) -> String {
    var out = ""
    out.reserveCapacity(value.utf8.count)
    for character in value.unicodeScalars {
      switch character {
      case "&": out += "&amp;"
      case "<": out += "&lt;"
      case ">": out += "&gt;"
      case "\"": out += "&quot;"
      case "'": out += "&#39;"
      default: out.unicodeScalars.append(character)
      }
    }
    return out
  }

  /// Page markup (never user input).
  mutating func raw(_ markup: String) { text += markup }

  /// User or data text, escaped.
  mutating func add(_ value: String) { text += Self.escape(value) }

  mutating func add(_ other: HTML) { text += other.text }

  /// `<tag attributes>escaped text</tag>`: attribute values are escaped.
  mutating func element(_ tag: String, _ attributes: [(String, String)] = [], text value: String) {
    open(tag, attributes)
    add(value)
    text += "</\(tag)>"
  }

  mutating func open(_ tag: String, _ attributes: [(String, String)] = []) {
    text += "<\(tag)"
    for (name, value) in attributes { text += " \(name)=\"\(Self.escape(value))\"" }
    text += ">"
  }

  mutating func close(_ tag: String) { text += "</\(tag)>" }

  /// A link whose target and text are data.
  mutating func link(_ href: String, _ label: String, _ attributes: [(String, String)] = []) {
    element("a", [("href", href)] + attributes, text: label)
  }

  /// A path segment or query value escaped for a URL.
  static func url(_ value: String) -> String {
    value.addingPercentEncoding(withAllowedCharacters: .urlQueryValueAllowed) ?? ""
  }
}

extension CharacterSet {
  static let urlQueryValueAllowed: CharacterSet = {
    var set = CharacterSet.alphanumerics
    set.insert(charactersIn: "-._~")
    return set
  }()
}
