/// Polls `condition` every few milliseconds until it holds; throws (rather than hangs) after
/// `limit`. For what a test cannot be told of directly, such as another process's progress.
public func eventually(
  _ what: String, limit: Duration = .seconds(60), _ condition: () async throws -> Bool
) async throws {
  let deadline = ContinuousClock.now + limit
  while try await !condition() {
    guard ContinuousClock.now < deadline else { throw ProcessFailure(message: "timed out waiting for \(what)") }
    try await Task.sleep(for: .milliseconds(5))
  }
}
