import ArgumentParser

/// A duration typed as users write it: `250ms`, `1.5s`, `2m`, `1h30m`, `7d`, `100us`, `0`.
///
/// Options take it with `parsing: .unconditional` and `transform: DurationArgument.parse`, so a
/// negative value reaches the parser (instead of being taken for an option) and every bad value is
/// one line that names it and says what is accepted.
struct DurationArgument: ExpressibleByArgument, Sendable, CustomStringConvertible {
  var duration: Duration
  let text: String

  /// The units, longest suffix first ("ms" also ends in "s").
  static let units: [(suffix: String, nanoseconds: Double)] = [
    ("ns", 1), ("us", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9), ("d", 86400e9),
  ]
  static let accepted = "use a number with a unit (ns, us, ms, s, m, h, d), e.g. 30s, 5m, 1h30m"
  /// The longest duration accepted: about 292 years, what a signed 64-bit count of nanoseconds holds.
  static let maximumNanoseconds = Double(Int64.max)

  init?(argument: String) {
    guard let parsed = try? Self.parse(argument) else { return nil }
    self = parsed
  }

  init(_ duration: Duration, text: String) {
    self.duration = duration
    self.text = text
  }

  /// Parses `text`, or throws a message naming it and what is accepted.
  static func parse(_ text: String) throws -> DurationArgument {
    if text == "0" { return DurationArgument(.zero, text: text) }
    if text.hasPrefix("-") { throw ValidationError("it is negative; \(accepted)") }
    if Double(text) != nil { throw ValidationError("it has no unit; \(accepted)") }
    var rest = Substring(text)
    var total = 0.0
    while !rest.isEmpty {
      let number = rest.prefix { $0.isNumber || $0 == "." }
      rest = rest.dropFirst(number.count)
      let letters = rest.prefix { $0.isLetter }
      rest = rest.dropFirst(letters.count)
      guard let value = Double(number), value.isFinite,
        let unit = units.first(where: { $0.suffix == String(letters) })
      else { throw ValidationError("not a duration; \(accepted)") }
      total += value * unit.nanoseconds
    }
    guard total <= maximumNanoseconds else {
      throw ValidationError("it is too long; at most 106751d (about 292 years)")
    }
    return DurationArgument(.nanoseconds(Int64(total.rounded())), text: text)
  }

  var description: String { text }
}

/// A whole number option that must be at least `minimum`: one line naming the value otherwise.
func parseCount(_ text: String, option: String, minimum: Int) throws -> Int {
  guard let value = Int(text) else {
    throw ValidationError("\(option) '\(text.prefix(40))' is not a whole number")
  }
  guard value >= minimum else { throw ValidationError("\(option) must be at least \(minimum), not \(value)") }
  return value
}
