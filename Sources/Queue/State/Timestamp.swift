public import Foundation

/// A wall-clock instant in microseconds since the Unix epoch: the resolution of event times.
public struct Timestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
  public var micros: Int64

  public init(micros: Int64) { self.micros = micros }

  public init(_ date: Date) { micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded()) }

  public static let zero = Timestamp(micros: 0)

  public var date: Date { Date(timeIntervalSince1970: Double(micros) / 1_000_000) }

  public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool { lhs.micros < rhs.micros }

  public static func + (lhs: Timestamp, rhs: Duration) -> Timestamp {
    Timestamp(micros: lhs.micros + rhs.micros)
  }

  public static func - (lhs: Timestamp, rhs: Timestamp) -> Duration { .microseconds(lhs.micros - rhs.micros) }

  /// ISO 8601 in UTC with microseconds, e.g. `2026-11-26T16:33:46.123456Z`.
  public var description: String {
    let seconds = micros >= 0 ? micros / 1_000_000 : (micros - 999_999) / 1_000_000
    let fraction = micros - seconds * 1_000_000
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
  /// Whole microseconds (truncated).
  public var micros: Int64 {
    components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000
  }
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
    let left = deadline - now()
    if left > .zero { try await Task.sleep(for: left) } else { try Task.checkCancellation() }
  }
}
