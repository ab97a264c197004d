public import GRPCCore

/// The request metadata key by which gRPC sends a call's deadline to the server.
public let grpcTimeoutMetadataKey = "grpc-timeout"

extension Metadata {
  /// What every call of a task step sends: its idempotency key (`RUN/STEP/ATTEMPT`) and its deadline.
  public static func stepCall(idempotencyKey: String, timeout: Duration) -> Metadata {
    var metadata = Metadata()
    metadata.addString(idempotencyKey, forKey: idempotencyKeyMetadataKey)
    metadata.addTimeout(timeout)
    return metadata
  }

  /// Tells the server that the caller gives up on the call after `timeout`, as the `grpc-timeout`
  /// header (at most eight digits and a unit, rounded up), without arming a timer in this process.
  ///
  /// For callers that enforce the deadline themselves, as the scheduler does for a step's attempt:
  /// `CallOptions.timeout` would arm a second timer, and two more tasks, for every call.
  public mutating func addTimeout(_ timeout: Duration) {
    addString(Self.grpcTimeoutValue(timeout), forKey: grpcTimeoutMetadataKey)
  }

  /// `timeout` in the wire format of `grpc-timeout`: the finest unit whose amount fits in eight
  /// digits, e.g. `30000000u` for 30 s and `100000S` for 100,000 s (both checked by the tests).
  public static func grpcTimeoutValue(_ timeout: Duration) -> String {
    let (seconds, attoseconds) = timeout.components
    guard seconds >= 0, attoseconds >= 0 else { return "0n" }
    // Beyond 99,999,999 hours (and Int64 nanoseconds) the largest value says the same thing.
    guard seconds < 9_000_000_000 else { return "99999999H" }
    let nanoseconds = seconds * 1_000_000_000 + (attoseconds + 999_999_999) / 1_000_000_000
    for (unit, size) in timeoutUnits {
      let amount = (nanoseconds + size - 1) / size
      if amount <= 99_999_999 { return "\(amount)\(unit)" }
    }
    return "99999999H"
  }
}

/// The units of `grpc-timeout`, finest first, with their length in nanoseconds.
private let timeoutUnits: [(unit: Character, nanoseconds: Int64)] = [
  ("n", 1), ("u", 1_000), ("m", 1_000_000), ("S", 1_000_000_000), ("M", 60_000_000_000), ("H", 3_600_000_000_000),
]
