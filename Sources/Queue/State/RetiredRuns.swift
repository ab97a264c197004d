import GPSModel

/// Where a state finds the terminal runs it no longer holds in memory: the run index.
protocol RetiredRuns: AnyObject, Sendable {
  /// The retired run with `id`, or nil when there is none.
  func retiredRun(_ id: RunID) throws(QueueError) -> Run?
  /// The newest retired run enqueued with idempotency key `key`.
  func retiredRun(idempotencyKey key: String) throws(QueueError) -> Run?
}

/// A ``RetiredRuns`` held by a ``QueueState`` without being part of its value: states compare and
/// hash by their contents alone.
struct RetiredRunsReference: Sendable, Hashable {
  var store: (any RetiredRuns)?

  static func == (lhs: Self, rhs: Self) -> Bool { true }

  func hash(into hasher: inout Hasher) {}
}
