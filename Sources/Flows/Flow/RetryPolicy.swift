import Foundation
import GPSModel
public import GRPCCore

/// How a task step is retried: attempts, exponential backoff with jitter, and which gRPC status
/// codes are worth another attempt.
public struct RetryPolicy: Sendable, Hashable {
  /// Attempts in all, the first included (1: no retries).
  public var maxAttempts: Int
  public var initialBackoff: Duration
  public var multiplier: Double
  public var maxBackoff: Duration
  /// Each backoff is scaled by a random factor in 1 ± jitter.
  public var jitter: Double
  public var retryableCodes: Set<RPCError.Code>

  /// The codes that mean "try again": the service was down, slow, overloaded or aborted.
  public static let defaultRetryableCodes: Set<RPCError.Code> = [
    .unavailable, .deadlineExceeded, .resourceExhausted, .aborted,
  ]

  public init(
    maxAttempts: Int = 3, initialBackoff: Duration = .milliseconds(200), multiplier: Double = 2,
    maxBackoff: Duration = .seconds(10), jitter: Double = 0.2,
    retryableCodes: Set<RPCError.Code> = RetryPolicy.defaultRetryableCodes
  ) {
    self.maxAttempts = max(1, maxAttempts)
    self.initialBackoff = initialBackoff
    self.multiplier = multiplier
    self.maxBackoff = maxBackoff
    self.jitter = jitter
    self.retryableCodes = retryableCodes
  }

  /// No retries.
  public static let none = RetryPolicy(maxAttempts: 1)

  /// The wait before attempt `attempt + 1`, given a uniform random number in 0..<1.
  public func backoff(after attempt: Int, random: Double) -> Duration {
    let base = Double(initialBackoff.micros) * pow(multiplier, Double(max(0, attempt - 1)))
    let capped = min(base, Double(maxBackoff.micros))
    let jittered = capped * (1 + jitter * (2 * random - 1))
    // Clamped below 2^62 µs: a huge multiplier or maximum must not trap the conversion.
    return .microseconds(Int64(min(max(0, jittered), 4.6e18)))
  }
}
