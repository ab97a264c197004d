package import GPSModel

/// The queue as it is now (or at a point of its history), read from its files without the lock
/// and without writing them: the CLI's answers when no server runs. It is the run index's
/// checkpoint (its active runs, counts and deployments) plus the log after it; the terminal runs
/// the index holds stay on disk and are read when asked for, so neither time nor memory grows with
/// them. A point before the index's checkpoint is replayed from the log's start (or a snapshot),
/// and memory still holds only what the index cannot answer for: a terminal run leaves it as
/// soon as the index holds it exactly as it is at that point (runs that change later stay). Without a
/// usable index (none, another version's, one that does not match this log) it replays the log
/// instead, holding every run, from a snapshot when one matches.
package final class QueueReader: RunSource, Sendable {
  /// Active runs, terminal runs the index did not hold yet, and the queue-wide state.
  package let state: QueueState
  /// The data directory whose files were read.
  package let directory: String
  package let logStart: UInt64
  /// Why the whole log was replayed, or nil when the index was read.
  package let replayedWhole: String?
  /// The sequence of the run index's checkpoint this reader started from (nil: it replayed the log).
  package let checkpointSequence: UInt64?
  /// The most runs memory held while reading.
  package let peakRunsInMemory: Int
  private let index: RetiredRunReader?

  /// - Parameters:
  ///   - point: the queue as it was after this point (the default: now).
  ///   - progress: called every few thousand events replayed with the last sequence applied.
  package convenience init(
    directory: String, at point: PointInTime = .sequence(.max), fileSystem: any FileSystem = PosixFileSystem(),
    progress: ((UInt64) -> Void)? = nil
  ) throws(QueueError) {
    try self.init(
      directory: directory, at: point, replaying: true, retiringEvery: QueueHistory.retirePass, fileSystem: fileSystem,
      progress: progress)!
  }

  /// As ``init(directory:at:fileSystem:progress:)``, with the events replayed between two passes
  /// that drop from memory the runs the index holds (a point before its checkpoint).
  package convenience init(directory: String, at point: PointInTime, retiringEvery events: UInt64) throws(QueueError) {
    try self.init(
      directory: directory, at: point, replaying: true, retiringEvery: events, fileSystem: PosixFileSystem(),
      progress: nil)!
  }

  /// The queue read from its run index and the log after it, or nil when the index cannot be used
  /// (a caller that checks the whole log before replaying it, which this does not need).
  package static func fromIndex(
    directory: String, at point: PointInTime = .sequence(.max), fileSystem: any FileSystem = PosixFileSystem(),
    progress: ((UInt64) -> Void)? = nil
  ) throws(QueueError) -> QueueReader? {
    try QueueReader(
      directory: directory, at: point, replaying: false, retiringEvery: QueueHistory.retirePass,
      fileSystem: fileSystem, progress: progress)
  }

  /// The queue replayed from the log alone, without its run index (which a read found damaged).
  package static func ignoringIndex(directory: String) throws(QueueError) -> QueueReader {
    try QueueReader(
      directory: directory, at: .sequence(.max), replaying: true, retiringEvery: QueueHistory.retirePass,
      fileSystem: PosixFileSystem(), progress: nil, useIndex: false)!
  }

  private init?(
    directory: String, at point: PointInTime, replaying: Bool, retiringEvery: UInt64, fileSystem: any FileSystem,
    progress: ((UInt64) -> Void)?, useIndex: Bool = true
  ) throws(QueueError) {
    let history = QueueHistory(directory: directory, fileSystem: fileSystem)
    self.directory = directory
    logStart = try LogReader(directory: directory, fileSystem: fileSystem).retainedStart()
    let opened =
      useIndex
      ? try Self.openIndex(directory: directory, fileSystem: fileSystem)
      : .failure(QueueError(code: .corrupt, message: "the run index is damaged"))
    switch opened {
    case .success(let (checkpoint, active, reader)):
      var state: QueueState
      if point.includes(sequence: checkpoint.sequence, time: checkpoint.time) {
        state = QueueState(checkpoint: checkpoint, active: active)
        state.retired = RetiredRunsReference(store: reader)
        try history.replay(into: &state, until: point, progress: progress)
        peakRunsInMemory = state.runs.count
      } else {
        (state, peakRunsInMemory) = try history.state(
          at: point, index: reader, retiringEvery: retiringEvery, progress: progress)
      }
      self.state = state
      index = reader
      replayedWhole = nil
      checkpointSequence =
        point.includes(sequence: checkpoint.sequence, time: checkpoint.time) ? checkpoint.sequence : nil
    case .failure(let why):
      guard replaying else { return nil }
      state = try history.state(at: point, progress: progress)
      peakRunsInMemory = state.runs.count
      index = nil
      replayedWhole = why.message
      checkpointSequence = nil
    }
  }

  /// The index's checkpoint and active runs, or why it cannot be used.
  private static func openIndex(
    directory: String, fileSystem: any FileSystem
  ) throws(QueueError) -> Result<(RunStore.Checkpoint, [Run], RetiredRunReader), QueueError> {
    let path = RunStore.path(in: directory)
    guard try fileSystem.size(of: path) != nil else {
      return .failure(QueueError(code: .notFound, message: "there is no run index"))
    }
    let opened: (RunStore.Checkpoint, [Run])
    let store: RunStore
    do throws(QueueError) {
      store = try RunStore(directory: directory, fileSystem: fileSystem, schema: false)
      // One read transaction for the reader's whole life: every read of the index sees it as at
      // this checkpoint, whatever a running server commits meanwhile (a run it retries would
      // otherwise leave the rows this reader relies on). It ends when the reader is released.
      try store.connection.execute("BEGIN")
      guard try store.formatVersion() == RunStore.formatVersion else {
        return .failure(QueueError(code: .corrupt, message: "the run index was written by another version of GPS"))
      }
      opened = (try store.checkpoint(), try store.activeRuns())
    } catch {
      return .failure(QueueError(code: error.code, message: "the run index cannot be read (\(error.message))"))
    }
    let checkpoint = opened.0
    let reader = LogReader(directory: directory, fileSystem: fileSystem)
    guard checkpoint.sequence > 0, try reader.batchHash(endingAt: checkpoint.sequence) == checkpoint.batchHash else {
      // The index covers events the log no longer has: a loss, never a reason to answer without
      // them. (Only asked when the hash did not match: reading the log's end costs a segment.)
      if let loss = checkpoint.loss(logEndsAt: try reader.lastSequence()) { throw loss }
      return .failure(QueueError(code: .corrupt, message: "the run index does not match the log"))
    }
    return .success((checkpoint, opened.1, RetiredRunReader(store)))
  }

  package func run(_ id: RunID) throws(QueueError) -> Run? { try state.run(id) }

  // The index holds the runs as of its checkpoint, which may be past this state's last event (a
  // point before it). Every run enqueued by then that the index holds otherwise than as it was
  // then is in memory: so the index is read up to this state's last sequence, and its runs that
  // memory holds are not.

  package func runs(matching query: RunQuery, upTo: UInt64? = nil, limit: Int) throws(QueueError) -> RunPage {
    guard let index else { return state.runs(matching: query, upTo: upTo, limit: limit) }
    let last = state.lastSequence
    return try RunPage.merged(upTo: upTo, limit: limit) { upTo, want throws(QueueError) in
      let indexed = try index.withStore { store throws(QueueError) in
        try store.runs(matching: query, upTo: min(upTo, last), limit: want)
      }
      let stale = Set(indexed.lazy.filter { self.state.runs[$0.id] != nil }.map(\.id))
      return (indexed, state.runs.runs(matching: query, upTo: upTo, limit: want), stale)
    }
  }

  package func runs(idPrefix prefix: String, limit: Int) throws(QueueError) -> [Run] {
    let found = state.runs(idPrefix: prefix, limit: limit)
    return try index?.adding(idPrefix: prefix, to: found, limit: limit, through: state.lastSequence) ?? found
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
    handOvers = checkpoint.handOvers
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
  /// `limit`. `through`: only indexed runs whose last event is at or before it (a state before
  /// the index's checkpoint holds the others, or they did not exist yet).
  func adding(
    idPrefix prefix: String, to found: [Run], limit: Int, through: UInt64 = .max
  ) throws(QueueError) -> [Run] {
    guard found.count < limit else { return found }
    var found = found
    let indexed = try withStore { store throws(QueueError) in
      // Of the runs enqueued by `through`, those whose last event is later are in memory, so in
      // `found` (it holds every match memory has when it is not full): they take no place.
      try store.runs(idPrefix: prefix, limit: limit + found.count, upTo: through)
    }
    for run in indexed
    where found.count < limit && run.lastSequence <= through && !found.contains(where: { $0.id == run.id }) {
      found.append(run)
    }
    return found
  }
}

/// The run index as it was after event `through`, for a state at a point before its checkpoint
/// that holds in memory every run the index does not hold as it was then: an indexed run whose
/// last event is later is one memory holds, or one that did not exist yet.
final class RetiredRunsThrough: RetiredRuns {
  let index: RetiredRunReader
  let through: UInt64

  init(_ index: RetiredRunReader, through: UInt64) {
    self.index = index
    self.through = through
  }

  func retiredRun(_ id: RunID) throws(QueueError) -> Run? {
    try index.retiredRun(id).flatMap { $0.lastSequence <= through ? $0 : nil }
  }

  func retiredRun(idempotencyKey key: String) throws(QueueError) -> Run? {
    try index.withStore { store throws(QueueError) in try store.run(idempotencyKey: key, upTo: through) }
      .flatMap { $0.lastSequence <= through ? $0 : nil }
  }
}

extension QueueHistory {
  /// Events replayed between two passes that drop terminal runs the index holds as they are.
  static let retirePass: UInt64 = 32_768

  /// The queue's state at `point`, before the run index's checkpoint: replayed as
  /// ``state(at:progress:)`` does, but holding in memory only the runs the index cannot answer
  /// for. Every few thousand events, a terminal run the index holds exactly as it is then (the
  /// same events: it does not change again before the checkpoint) leaves memory; a run that does
  /// change again stays. Lookups of the runs that left read the index.
  /// Returns the state and the most runs it held at once.
  func state(
    at point: PointInTime, index: RetiredRunReader, retiringEvery: UInt64, progress: ((UInt64) -> Void)?
  ) throws(QueueError) -> (QueueState, peak: Int) {
    var state = try start(at: point)
    var peak = state.runs.count
    // Runs the index holds with later events than memory (or not at all: active at its
    // checkpoint): the index's last sequence for each, not asked again before memory reaches it.
    var later: [RunID: UInt64] = [:]
    func retire(_ state: inout QueueState) throws(QueueError) {
      peak = max(peak, state.runs.count)
      var leaving: Set<RunID> = []
      try index.withStore { store throws(QueueError) in
        for run in state.runs.values where run.state.isTerminal {
          if let last = later[run.id], last > run.lastSequence { continue }
          let indexed = try store.run(firstSequence: run.firstSequence)
          if let indexed, indexed == run {
            leaving.insert(run.id)
            later[run.id] = nil
          } else {
            later[run.id] = indexed.map { $0.id == run.id ? $0.lastSequence : .max } ?? .max
          }
        }
      }
      state.retire(leaving)
      state.retired = RetiredRunsReference(store: RetiredRunsThrough(index, through: state.lastSequence))
    }
    try retire(&state)
    var next = state.lastSequence + retiringEvery
    try replay(into: &state, until: point) { state throws(QueueError) in
      if state.lastSequence % 4096 == 0 { progress?(state.lastSequence) }
      if state.lastSequence >= next {
        try retire(&state)
        next = state.lastSequence + retiringEvery
      }
    }
    try retire(&state)
    return (state, peak)
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
