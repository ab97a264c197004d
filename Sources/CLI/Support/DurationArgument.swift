import ArgumentParser

/// A duration typed as users write it: `250ms`, `1.5s`, `2m`, `100us`, `0`.
struct DurationArgument: ExpressibleByArgument, Sendable, CustomStringConvertible {
  var duration: Duration
  let text: String

  init?(argument: String) {
    if argument == "0" {
      self.init(.zero, text: argument)
      return
    }
    // Longest suffixes first: "ms" also ends in "s".
    let units: [(suffix: String, nanoseconds: Double)] = [
      ("ns", 1), ("us", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9),
    ]
    guard let unit = units.first(where: { argument.hasSuffix($0.suffix) }),
      let value = Double(argument.dropLast(unit.suffix.count)), value >= 0, value.isFinite
    else { return nil }
    self.init(.nanoseconds(Int64((value * unit.nanoseconds).rounded())), text: argument)
  }

  init(_ duration: Duration, text: String) {
    self.duration = duration
    self.text = text
  }

  var description: String { text }
}
