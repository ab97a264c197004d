import Synchronization

/// A clock that moves only when told to: for deterministic tests of leases, lateness and retries.
public final class ManualClock: WallClock {
  private let current: Mutex<Timestamp>

  public init(_ start: Timestamp = Timestamp(micros: 1_800_000_000_000_000)) {
    current = Mutex(start)
  }

  public func now() -> Timestamp { current.withLock { $0 } }

  public func advance(by duration: Duration) {
    current.withLock { $0 = $0 + duration }
  }

  public func set(_ time: Timestamp) {
    current.withLock { $0 = time }
  }
}
