package import GPSModel
import Synchronization

/// The run index seen from the queue: opening it at startup, dropping indexed terminal runs from
/// memory, and the queries that read both places.
extension RunQueue {
  /// What opening the index gives the queue.
  struct OpenedIndex {
    var state: QueueState
    var fold: IndexFold
    var reader: RetiredRunReader
    /// Why the index was rebuilt from the log, if it was.
    var rebuilt: String?
    var replayed: UInt64
  }

  /// Opens the index of `directory` and brings it up to the log's end: loads its checkpoint (the
  /// active runs and the queue-wide state), applies the log after it, and commits.
  static func openIndex(
    directory: String, fileSystem: any FileSystem, log: EventLog, options: RunIndexOptions,
    recreatingBecause damage: String? = nil
  ) throws(QueueError) -> OpenedIndex {
    let reader = LogReader(directory: directory, fileSystem: fileSystem)
    var store =
      if damage != nil {
        try RunStore.recreated(directory: directory, fileSystem: fileSystem)
      } else {
        try RunStore(directory: directory, fileSystem: fileSystem)
      }
    try store.configureForWriting()
    var rebuilt = damage ?? store.recreatedBecause
    var checkpoint: RunStore.Checkpoint
    do throws(QueueError) {
      checkpoint = try store.checkpoint()
    } catch {
      rebuilt = error.message
      store = try RunStore.recreated(directory: directory, fileSystem: fileSystem)
      checkpoint = RunStore.Checkpoint()
    }
    let last = log.lastBatch
    if let loss = checkpoint.loss(logEndsAt: last.sequence) { throw loss }
    if checkpoint.sequence > 0 {
      let hash = checkpoint.sequence == last.sequence ? last.hash : try reader.batchHash(endingAt: checkpoint.sequence)
      if hash != checkpoint.batchHash {
        // Never set aside an index that a rebuild could not replace: the log's head is archived
        // away (or lost) and no snapshot holds its runs.
        if try !reader.readsFromStart(),
          let anchor = try LogAnchor.read(logDirectory: reader.logDirectory, fileSystem: fileSystem),
          try SnapshotStore(directory: directory, fileSystem: fileSystem).intactSnapshots().isEmpty
        {
          throw QueueError(
            code: .dataLost,
            message:
              "the run index stops at sequence \(checkpoint.sequence), which the log no longer holds, and it cannot be rebuilt: \(anchor.noSnapshotCovers.message); the index was left as it is",
            missing: anchor.noSnapshotCovers.missing)
        }
        rebuilt = "the run index does not match the log at sequence \(checkpoint.sequence)"
        store = try RunStore.recreated(directory: directory, fileSystem: fileSystem)
        checkpoint = RunStore.Checkpoint()
      }
    }
    if checkpoint.sequence == 0 {
      // Rebuilding: a snapshot of an earlier version that covers sequences past the log's end is
      // proof that the log lost them (this throws).
      _ = try SnapshotStore(directory: directory, fileSystem: fileSystem).loadNewest(matching: reader, lastBatch: last)
    }
    var state = QueueState()
    var dirty: [RunID] = []
    var batchHash = checkpoint.batchHash
    do throws(QueueError) {
      if checkpoint.sequence > 0 {
        state = QueueState(checkpoint: checkpoint, active: try store.activeRuns())
      } else if try !reader.readsFromStart() {
        // The log's head is gone: only a snapshot holds the runs it had.
        let snapshots = SnapshotStore(directory: directory, fileSystem: fileSystem)
        let loaded = try load(
          directory: directory, snapshots: snapshots, fileSystem: fileSystem, lastBatch: last)
        state = loaded.state
        dirty = state.runs.keys
        batchHash =
          state.lastSequence == last.sequence ? last.hash : try reader.batchHash(endingAt: state.lastSequence) ?? []
      }
    } catch {
      guard error.code == .corrupt, rebuilt == nil else { throw error }
      // A damaged row: start the index again from the log.
      return try openIndex(
        directory: directory, fileSystem: fileSystem, log: log, options: options, recreatingBecause: error.message)
    }
    let start = state.lastSequence
    state.retired = RetiredRunsReference(store: FoldStoreReference(store))
    let fold = IndexFold(store: store, reader: reader, state: state, batchHash: batchHash)
    fold.committed = checkpoint.sequence
    fold.dirty = Set(dirty)
    if !dirty.isEmpty { fold.inActiveTable = [] }
    try fold.catchUp(to: last.sequence, maxDirty: options.commitRuns)
    try fold.commit()
    var queueState = fold.state
    let retiredReader = RetiredRunReader(try RunStore(directory: directory, fileSystem: fileSystem, schema: false))
    queueState.retired = RetiredRunsReference(store: retiredReader)
    return OpenedIndex(
      state: queueState, fold: fold, reader: retiredReader, rebuilt: rebuilt, replayed: last.sequence - start)
  }

  /// The indexer committed up to `sequence`: drop the terminal runs it holds from memory, a batch
  /// at a time.
  func indexCommitted(through sequence: UInt64) {
    guard let indexOptions = options.runIndex else { return }
    locked.withLock { locked in
      let minimum = max(indexOptions.retireBatch, locked.state.runs.count / 8)
      if locked.state.retire(through: sequence, minimum: minimum) > 0 {
        locked.retiredThrough = max(locked.retiredThrough, sequence)
      }
    }
  }

  /// How far the run index reaches, or nil without one.
  package var indexStatus: RunIndexStatus? {
    guard let indexer else { return nil }
    return RunIndexStatus(
      indexedSequence: indexer.indexedSequence, durableSequence: log.lastSequence,
      runsInMemory: locked.withLock { $0.state.runs.count }, failure: indexer.failure?.message)
  }

  /// The run index's next commit fails with `error` (tests of what a failing index shows).
  package func injectIndexFailure(_ error: QueueError) { indexer?.inject(error) }

  /// Indexes everything durable now and drops the indexed terminal runs from memory (whatever
  /// their number): for tests and benchmarks.
  package func flushIndex() throws(QueueError) {
    guard let indexer else { return }
    try indexer.flush()
    let sequence = indexer.indexedSequence
    locked.withLock { locked in
      if locked.state.retire(through: sequence) > 0 { locked.retiredThrough = max(locked.retiredThrough, sequence) }
    }
  }

  /// The run with `id`, wherever it is.
  package func run(_ id: RunID) throws(QueueError) -> Run? {
    try locked.withLock { locked throws(QueueError) in try locked.state.run(id) }
  }

  /// Runs matching `query`, newest first, enqueued at sequence `upTo` or before (nil: from the
  /// newest): at most `limit`, with where the next page starts.
  package func runs(matching query: RunQuery, upTo: UInt64? = nil, limit: Int) throws(QueueError) -> RunPage {
    try RunPage.merged(upTo: upTo, limit: limit) { upTo, want throws(QueueError) in
      // The index first, then memory under the lock: a run in memory then is the newer of the two.
      let (indexed, indexedThrough) =
        try retiredReader?.withStore { store throws(QueueError) in
          try store.reading { () throws(QueueError) in try store.runs(matching: query, upTo: upTo, limit: want) }
        } ?? ([], .max)
      let (inMemory, stale, consistent) = locked.withLock { locked in
        (
          locked.state.runs.runs(matching: query, upTo: upTo, limit: want),
          Set(indexed.filter { locked.state.runs[$0.id] != nil }.map(\.id)),
          // Every run that left memory since is in what the index read saw.
          locked.retiredThrough <= indexedThrough
        )
      }
      // Runs left memory for a commit the read did not see yet: read again.
      return consistent ? (indexed, inMemory, stale) : nil
    }
  }

  /// Runs whose id's text starts with `prefix`, wherever they are: at most `limit`.
  package func runs(idPrefix prefix: String, limit: Int) throws(QueueError) -> [Run] {
    let found = locked.withLock { locked in locked.state.runs(idPrefix: prefix, limit: limit) }
    return try retiredReader?.adding(idPrefix: prefix, to: found, limit: limit) ?? found
  }
}

extension RunStore {
  /// Removes the index of `directory` and opens an empty one.
  static func recreated(directory: String, fileSystem: any FileSystem) throws(QueueError) -> RunStore {
    try removeFiles(at: path(in: directory), fileSystem: fileSystem)
    let store = try RunStore(directory: directory, fileSystem: fileSystem)
    try store.configureForWriting()
    return store
  }
}
