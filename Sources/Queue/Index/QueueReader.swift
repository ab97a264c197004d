/// The runs a listing or a lookup reads: a live queue, or one read from its files.
public protocol RunSource {
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

/// The queue as it is now (or at a point of its history), read from its files without the lock
/// and without writing them: the CLI's answers when no server runs. It is the run index's
/// checkpoint (its active runs, counts and deployments) plus the log after it; the terminal runs
/// the index holds stay on disk and are read when asked for, so neither time nor memory grows with
/// them. Without a usable index (none, another version's, one that does not match this log, or
/// one past the point asked for) it replays the log instead, from a snapshot when one matches.
public final class QueueReader: RunSource, Sendable {
  /// Active runs, terminal runs the index did not hold yet, and the queue-wide state.
  public let state: QueueState
  public let logStart: UInt64
  /// Why the whole log was replayed, or nil when the index was read.
  public let replayedWhole: String?
  private let index: RetiredRunReader?

  /// - Parameters:
  ///   - point: the queue as it was after this point (the default: now).
  ///   - progress: called every few thousand events replayed with the last sequence applied.
  public convenience init(
    directory: String, at point: PointInTime = .sequence(.max), fileSystem: any FileSystem = PosixFileSystem(),
    progress: ((UInt64) -> Void)? = nil
  ) throws(QueueError) {
    try self.init(directory: directory, at: point, replaying: true, fileSystem: fileSystem, progress: progress)!
  }

  /// The queue read from its run index and the log after it, or nil when the index cannot be used
  /// (a caller that checks the whole log before replaying it, which this does not need).
  public static func fromIndex(
    directory: String, at point: PointInTime = .sequence(.max), fileSystem: any FileSystem = PosixFileSystem(),
    progress: ((UInt64) -> Void)? = nil
  ) throws(QueueError) -> QueueReader? {
    try QueueReader(directory: directory, at: point, replaying: false, fileSystem: fileSystem, progress: progress)
  }

  private init?(
    directory: String, at point: PointInTime, replaying: Bool, fileSystem: any FileSystem,
    progress: ((UInt64) -> Void)?
  ) throws(QueueError) {
    let history = QueueHistory(directory: directory, fileSystem: fileSystem)
    logStart = try LogReader(directory: directory, fileSystem: fileSystem).retainedStart()
    switch try Self.openIndex(directory: directory, at: point, fileSystem: fileSystem) {
    case .success(let (checkpoint, active, reader)):
      var state = QueueState(checkpoint: checkpoint, active: active)
      state.retired = RetiredRunsReference(store: reader)
      try history.replay(into: &state, until: point, progress: progress)
      self.state = state
      index = reader
      replayedWhole = nil
    case .failure(let why):
      guard replaying else { return nil }
      state = try history.state(at: point, progress: progress)
      index = nil
      replayedWhole = why.message
    }
  }

  /// The index's checkpoint and active runs, or why it cannot be used.
  private static func openIndex(
    directory: String, at point: PointInTime, fileSystem: any FileSystem
  ) throws(QueueError) -> Result<(RunStore.Checkpoint, [Run], RetiredRunReader), QueueError> {
    let path = RunStore.path(in: directory)
    guard try fileSystem.size(of: path) != nil else {
      return .failure(QueueError(code: .notFound, message: "there is no run index"))
    }
    let opened: (RunStore.Checkpoint, [Run])
    let store: RunStore
    do throws(QueueError) {
      store = try RunStore(directory: directory, fileSystem: fileSystem, schema: false)
      guard try store.formatVersion() == RunStore.formatVersion else {
        return .failure(QueueError(code: .corrupt, message: "the run index was written by another version of GPS"))
      }
      (opened, _) = try store.reading { () throws(QueueError) in (try store.checkpoint(), try store.activeRuns()) }
    } catch {
      return .failure(QueueError(code: error.code, message: "the run index cannot be read (\(error.message))"))
    }
    let checkpoint = opened.0
    guard point.includes(sequence: checkpoint.sequence, time: checkpoint.time) else {
      return .failure(QueueError(code: .invalidArgument, message: "the run index is past that point"))
    }
    let reader = LogReader(directory: directory, fileSystem: fileSystem)
    guard checkpoint.sequence > 0, try reader.batchHash(endingAt: checkpoint.sequence) == checkpoint.batchHash else {
      // The index covers events the log no longer has: a loss, never a reason to answer without
      // them. (Only asked when the hash did not match: reading the log's end costs a segment.)
      if let loss = checkpoint.loss(logEndsAt: try reader.lastSequence()) { throw loss }
      return .failure(QueueError(code: .corrupt, message: "the run index does not match the log"))
    }
    return .success((checkpoint, opened.1, RetiredRunReader(store)))
  }

  public func run(_ id: RunID) throws(QueueError) -> Run? { try state.run(id) }

  public func runs(matching query: RunQuery, upTo: UInt64? = nil, limit: Int) throws(QueueError) -> RunPage {
    guard let index else { return state.runs(matching: query, upTo: upTo, limit: limit) }
    return try RunPage.merged(upTo: upTo, limit: limit) { upTo, want throws(QueueError) in
      let indexed = try index.withStore { store throws(QueueError) in
        try store.runs(matching: query, upTo: upTo, limit: want)
      }
      let stale = Set(indexed.lazy.filter { self.state.runs[$0.id] != nil }.map(\.id))
      return (indexed, state.runs.runs(matching: query, upTo: upTo, limit: want), stale)
    }
  }

  public func runs(idPrefix prefix: String, limit: Int) throws(QueueError) -> [Run] {
    let found = state.runs(idPrefix: prefix, limit: limit)
    return try index?.adding(idPrefix: prefix, to: found, limit: limit) ?? found
  }
}

extension PointInTime {
  /// Whether the state at this point includes the event at `sequence`, at `time`. (Times never
  /// decrease along the log.)
  func includes(sequence: UInt64, time: Timestamp) -> Bool {
    switch self {
    case .sequence(let last): sequence <= last
    case .time(let last): time <= last
    }
  }
}

extension QueueState {
  /// The state at a checkpoint of the run index: its active runs and queue-wide state.
  init(checkpoint: RunStore.Checkpoint, active: [Run]) {
    self.init()
    runs = RunTable(active)
    rebuildDerived(from: active)
    counts = checkpoint.counts
    deployments = checkpoint.deployments
    lastSequence = checkpoint.sequence
    lastTime = checkpoint.time
  }

  /// Runs in memory whose id's text starts with `prefix`: at most `limit`.
  func runs(idPrefix prefix: String, limit: Int) -> [Run] {
    Array(runs.values.lazy.filter { $0.id.description.hasPrefix(prefix) }.prefix(limit))
  }
}

extension RetiredRunReader {
  /// `found` (runs in memory whose id's text starts with `prefix`), then indexed ones: at most
  /// `limit`.
  func adding(idPrefix prefix: String, to found: [Run], limit: Int) throws(QueueError) -> [Run] {
    guard found.count < limit else { return found }
    var found = found
    let indexed = try withStore { store throws(QueueError) in try store.runs(idPrefix: prefix, limit: limit) }
    for run in indexed where found.count < limit && !found.contains(where: { $0.id == run.id }) {
      found.append(run)
    }
    return found
  }
}

extension RunPage {
  /// One page of runs from the run index and from memory, newest first. `read(upTo, want)` gives
  /// up to `want` runs of each enqueued at `upTo` or before, and the indexed runs memory holds a
  /// newer copy of; nil to be called again (what it read was not one consistent view).
  static func merged(
    upTo: UInt64?, limit: Int,
    read: (UInt64, Int) throws(QueueError) -> (indexed: [Run], inMemory: [Run], stale: Set<RunID>)?
  ) throws(QueueError) -> RunPage {
    let limit = max(1, limit)
    var found: [Run] = []
    var upTo = upTo ?? .max
    while true {
      let want = limit + 1 - found.count
      guard let (indexed, inMemory, stale) = try read(upTo, want) else { continue }
      // Each list is complete down to its last run when it is full, and to the start otherwise.
      let indexFloor = indexed.count == want ? indexed.last!.firstSequence : 0
      let memoryFloor = inMemory.count == want ? inMemory.last!.firstSequence : 0
      let floor = max(indexFloor, memoryFloor)
      var merged = inMemory + indexed.filter { !stale.contains($0.id) }
      merged.sort { $0.firstSequence > $1.firstSequence }
      found += merged.prefix { $0.firstSequence >= floor }.prefix(want)
      if found.count > limit {
        return RunPage(runs: Array(found.prefix(limit)), next: found[limit].firstSequence)
      }
      guard floor > 0 else { return RunPage(runs: found, next: nil) }
      upTo = floor - 1
    }
  }
}
