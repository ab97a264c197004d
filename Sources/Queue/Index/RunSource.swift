package import GPSModel

/// The runs a listing or a lookup reads: a live queue, or one read from its files.
package protocol RunSource {
  /// The run with `id`, wherever it is.
  func run(_ id: RunID) throws(QueueError) -> Run?
  /// Runs matching `query`, newest first, enqueued at sequence `upTo` or before (nil: from the
  /// newest): at most `limit`, with where the next page starts.
  func runs(matching query: RunQuery, upTo: UInt64?, limit: Int) throws(QueueError) -> RunPage
  /// Runs whose id's text starts with `prefix`: at most `limit`.
  func runs(idPrefix prefix: String, limit: Int) throws(QueueError) -> [Run]
  /// The first sequence the log still holds: runs enqueued before it are archived.
  var logStart: UInt64 { get }
}

/// A queue that reads are answered from, the same way whichever it is: the server's live queue, or
/// (no server running) the queue read from its files. Both have runs, a state and a log.
package protocol ReadableQueue: RunSource, Sendable {
  /// The data directory: histories are read from its log.
  var directory: String { get }
  /// The last sequence an answer shows: what is durable, or what the files held when read.
  var durableSequence: UInt64 { get }
  /// `body`'s answer from the queue-wide state (deployments, counts).
  func withState<T, E: Error>(_ body: (QueueState) throws(E) -> T) throws(E) -> T
}

extension RunQueue: ReadableQueue {}

extension QueueReader: ReadableQueue {
  /// The last event the reader applied: nothing later is read.
  package var durableSequence: UInt64 { state.lastSequence }

  package func withState<T, E: Error>(_ body: (QueueState) throws(E) -> T) throws(E) -> T { try body(state) }
}
