public import Foundation

/// A wall-clock instant in microseconds since the Unix epoch: the resolution of event times.
public struct Timestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
  public var micros: Int64

  public init(micros: Int64) { self.micros = micros }

  /// `date` to the microsecond; a date beyond what 64 bits of microseconds hold (about ±292,000
  /// years) is clamped to the nearest one they do.
  public init(_ date: Date) {
    let value = (date.timeIntervalSince1970 * 1_000_000).rounded()
    micros =
      value.isNaN
      ? 0 : value >= Double(Int64.max) ? .max : value <= Double(Int64.min) ? .min : Int64(value)
  }

  public static let zero = Timestamp(micros: 0)

  public var date: Date { Date(timeIntervalSince1970: Double(micros) / 1_000_000) }

  public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool { lhs.micros < rhs.micros }

  /// Saturating: a time this far out (about ±292,000 years) is a time that never comes, not a trap.
  /// Times and durations from the log may hold any value, and the reducer must not trap on one.
  public static func + (lhs: Timestamp, rhs: Duration) -> Timestamp {
    Timestamp(micros: lhs.micros.addingSaturated(rhs.micros))
  }

  /// Saturating, as `+`.
  public static func - (lhs: Timestamp, rhs: Duration) -> Timestamp {
    Timestamp(micros: lhs.micros.subtractingSaturated(rhs.micros))
  }

  /// Exact: the difference of two 64-bit times always fits a `Duration`.
  public static func - (lhs: Timestamp, rhs: Timestamp) -> Duration {
    .microseconds(Int128(lhs.micros) - Int128(rhs.micros))
  }

  /// ISO 8601 in UTC with microseconds, e.g. `2026-11-26T16:33:46.123456Z`.
  public var description: String {
    // Floor division, without the overflow `micros - 999_999` would have at `Int64.min`.
    let (quotient, remainder) = micros.quotientAndRemainder(dividingBy: 1_000_000)
    let seconds = remainder < 0 ? quotient - 1 : quotient
    let fraction = remainder < 0 ? remainder + 1_000_000 : remainder
    var time = time_t(seconds)
    var parts = tm()
    gmtime_r(&time, &parts)
    func pad(_ value: Int32, _ width: Int) -> String {
      let text = String(value)
      return String(repeating: "0", count: max(0, width - text.count)) + text
    }
    let fractionText = String(fraction)
    return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
      + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
      + String(repeating: "0", count: 6 - fractionText.count) + fractionText + "Z"
  }
}

extension Duration {
  /// Whole microseconds (truncated), saturated to what an `Int64` holds.
  public var micros: Int64 {
    let (seconds, attoseconds) = components
    return seconds.multipliedSaturated(by: 1_000_000).addingSaturated(attoseconds / 1_000_000_000_000)
  }
}

extension Int64 {
  /// `self + other`, or the nearest bound when the sum does not fit.
  @inlinable public func addingSaturated(_ other: Int64) -> Int64 {
    let (sum, overflow) = addingReportingOverflow(other)
    return overflow ? (other > 0 ? .max : .min) : sum
  }

  /// `self - other`, or the nearest bound when the difference does not fit.
  @inlinable public func subtractingSaturated(_ other: Int64) -> Int64 {
    let (difference, overflow) = subtractingReportingOverflow(other)
    return overflow ? (other < 0 ? .max : .min) : difference
  }

  /// `self * other`, or the nearest bound when the product does not fit.
  @inlinable public func multipliedSaturated(by other: Int64) -> Int64 {
    let (product, overflow) = multipliedReportingOverflow(by: other)
    return overflow ? ((self < 0) == (other < 0) ? .max : .min) : product
  }
}

extension FixedWidthInteger where Self: UnsignedInteger {
  /// `self + 1`, staying at the maximum: counters in the reducer, which must never trap.
  @inlinable public var incrementedSaturated: Self { self == .max ? self : self + 1 }
}

/// Where event times come from, and how long waits last. Tests inject a ``ManualClock``, which
/// moves and wakes sleepers only when told to.
public protocol WallClock: Sendable {
  func now() -> Timestamp
  /// Returns once ``now()`` has reached `deadline` (at once if it has), or throws
  /// `CancellationError` when the task is cancelled first.
  func sleep(until deadline: Timestamp) async throws
}

extension WallClock {
  public func sleep(for duration: Duration) async throws {
    try await sleep(until: now() + duration)
  }
}

/// The system's real-time clock.
public struct SystemClock: WallClock {
  public init() {}

  public func now() -> Timestamp {
    var spec = timespec()
    clock_gettime(CLOCK_REALTIME, &spec)
    return Timestamp(micros: Int64(spec.tv_sec) * 1_000_000 + Int64(spec.tv_nsec) / 1000)
  }

  /// Sleeps on the monotonic clock for the time left until `deadline`: a wall-clock step while
  /// asleep moves the wake-up by as much, never further.
  public func sleep(until deadline: Timestamp) async throws {
    // In steps of at most a day: a deadline from the log may be ~292,000 years away, further than
    // the runtime's timers are meant to reach.
    var left = deadline - now()
    while left > .zero {
      try await Task.sleep(for: min(left, .seconds(86_400)))
      left = deadline - now()
    }
    try Task.checkCancellation()
  }
}
