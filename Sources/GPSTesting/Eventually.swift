import GPSModel

/// Polls `condition` every few milliseconds until it holds; throws (rather than hangs) after
/// `limit`. For what a test cannot be told of directly, such as another process's progress.
public func eventually(
  _ what: String, limit: Duration = .seconds(60), _ condition: () async throws -> Bool
) async throws {
  let deadline = ContinuousClock.now + limit
  while try await !condition() {
    guard ContinuousClock.now < deadline else { throw WaitTimedOut(what: what, limit: limit) }
    try await Task.sleep(for: .milliseconds(5))
  }
}

/// Waits until a task sleeps on `clock` until at most `duration` from its present time (so the
/// wait the test means to end has begun), then moves the clock on by `duration`.
public func advance(_ clock: ManualClock, by duration: Duration, past what: String) async throws {
  try await eventually("\(what) to wait on the clock") {
    clock.nextWake.map { $0 <= clock.now() + duration } ?? false
  }
  clock.advance(by: duration)
}

/// What ``eventually(_:limit:_:)`` throws when its condition did not come to hold in time.
public struct WaitTimedOut: Error, CustomStringConvertible {
  public let what: String
  public let limit: Duration
  public var description: String { "timed out waiting for \(what) (\(limit))" }
}
