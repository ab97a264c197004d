import Dispatch
import Foundation
import GPSModel
import Synchronization

/// Options of the run index: terminal runs leave memory for `DATA/index/runs.db`.
public struct RunIndexOptions: Sendable, Hashable {
  /// The indexer commits at most this long after an event became durable (its lag).
  public var commitInterval: Duration = .milliseconds(200)
  /// …or once this many runs changed, whichever comes first; also the most runs a rebuild holds.
  public var commitRuns = 16_384
  /// The queue drops terminal runs from memory once the index holds this many of them (or an
  /// eighth of the runs in memory, if more): each drop rebuilds the in-memory table.
  public var retireBatch = 1_024

  public init() {}
}

/// The fold that feeds the run index: the log's durable events applied to a state of its own,
/// committed to the ``RunStore`` every so often with the checkpoint they reach, then its terminal
/// runs dropped. Confined to the indexer's queue.
final class IndexFold {
  let store: RunStore
  let reader: LogReader
  var state: QueueState
  var cursor: LogCursor
  /// Runs changed since the last commit.
  var dirty: Set<RunID> = []
  /// Enqueue sequences of the runs in the `active` table.
  var inActiveTable: Set<UInt64>
  var deploymentsChanged = false
  /// Whether `state` knows the events the log's decisions skip (read once, at the first catch-up).
  var skipsRead = false
  /// The hash of the batch that ends at `state.lastSequence`.
  var batchHash: [UInt8]

  init(store: RunStore, reader: LogReader, state: QueueState, batchHash: [UInt8]) {
    self.store = store
    self.reader = reader
    self.state = state
    self.batchHash = batchHash
    cursor = LogCursor(from: state.lastSequence + 1)
    inActiveTable = Set(state.runs.values.map(\.firstSequence))
  }

  /// Applies every event up to `durable`, committing whenever `maxDirty` runs changed (at the end
  /// of a batch). Returns whether it applied anything.
  @discardableResult
  func catchUp(to durable: UInt64, maxDirty: Int) throws(QueueError) -> Bool {
    guard state.lastSequence < durable else { return false }
    if !skipsRead {
      state.skip(try SkippedEvents.read(logDirectory: reader.logDirectory, fileSystem: reader.fileSystem))
      skipsRead = true
    }
    do {
      while state.lastSequence < durable {
        var full = false
        try reader.read(
          &cursor, window: 1 << 20,
          { record in
            guard record.sequence <= durable else { return false }
            let event = try RunEvent(record)
            try state.apply(event, sequence: record.sequence)
            if let id = RunID(bytes: event.runID) { dirty.insert(id) }
            switch event.kind {
            case .deploymentRegistered, .deploymentHandedOver: deploymentsChanged = true
            default: break
            }
            return true
          },
          batchEnded: { sequence, hash in
            self.batchHash = hash()
            full = self.dirty.count >= maxDirty
            return !full && sequence < durable
          })
        if full {
          try commit()
        } else if state.lastSequence < durable {
          // The reader saw no more records although the log holds them durably.
          throw QueueError(
            code: .corrupt,
            message:
              "the run index stopped at event \(state.lastSequence) but the log holds \(durable) durably; a segment file is missing or damaged"
          )
        }
      }
    } catch let error as QueueError {
      throw error
    } catch {
      throw QueueError(code: .io, message: "the run index could not read the log: \(error)", cause: error)
    }
    return true
  }

  /// Writes the changed runs and the checkpoint in one transaction, then drops the terminal runs
  /// from memory (the store holds them).
  func commit() throws(QueueError) {
    guard !dirty.isEmpty || deploymentsChanged || committed != state.lastSequence else { return }
    var changes = RunStore.Changes()
    changes.deploymentsChanged = deploymentsChanged
    for id in dirty {
      guard let run = state.runs[id] else { continue }
      if run.state.isTerminal {
        changes.terminal.append(run)
        if inActiveTable.remove(run.firstSequence) != nil { changes.leftActive.append(run.firstSequence) }
      } else {
        changes.active.append(run)
        // A run retried after it was terminal has a row in `runs` to remove.
        if run.userRetries > 0, !inActiveTable.contains(run.firstSequence) { changes.revived.append(run.firstSequence) }
        inActiveTable.insert(run.firstSequence)
      }
    }
    let checkpoint = RunStore.Checkpoint(
      sequence: state.lastSequence, batchHash: batchHash, time: state.lastTime, counts: state.counts,
      deployments: state.deployments, handOvers: state.handOvers)
    try store.write(changes, checkpoint: checkpoint)
    committed = state.lastSequence
    dirty = []
    deploymentsChanged = false
    state.retire(through: state.lastSequence)
  }

  /// The sequence of the last commit.
  var committed: UInt64 = 0
}

/// The store behind a state's ``RetiredRuns``: one connection behind a lock, for the queue (its
/// commands and queries) while the indexer writes through another.
final class RetiredRunReader: RetiredRuns {
  private let store: Mutex<RunStore>
  /// Told when a read finds the index damaged (a row that fails its checksum): before the error
  /// is thrown, so no answer comes from it.
  let onDamage = Mutex<(@Sendable (QueueError) -> Void)?>(nil)

  init(_ store: sending RunStore) {
    self.store = Mutex(store)
  }

  func retiredRun(_ id: RunID) throws(QueueError) -> Run? {
    try withStore { store throws(QueueError) in try store.run(id) }
  }

  func retiredRun(idempotencyKey key: String) throws(QueueError) -> Run? {
    try withStore { store throws(QueueError) in try store.run(idempotencyKey: key) }
  }

  func withStore<T>(_ body: (RunStore) throws(QueueError) -> T) throws(QueueError) -> T {
    do throws(QueueError) {
      return try store.withLock { store throws(QueueError) in
        defer { store.connection.endReads() }
        return try body(store)
      }
    } catch {
      if error.code == .corrupt, let onDamage = onDamage.withLock({ $0 }) { onDamage(error) }
      throw error
    }
  }
}

/// The indexer's own store, as its fold's ``RetiredRuns``: used only on the indexer's queue.
final class FoldStoreReference: RetiredRuns, @unchecked Sendable {
  let store: RunStore

  init(_ store: RunStore) { self.store = store }

  func retiredRun(_ id: RunID) throws(QueueError) -> Run? { try store.run(id) }

  func retiredRun(idempotencyKey key: String) throws(QueueError) -> Run? { try store.run(idempotencyKey: key) }
}

/// What the run index has done, for status and metrics.
package struct RunIndexStatus: Sendable, Hashable {
  /// The index holds every event up to here.
  package var indexedSequence: UInt64
  /// The log holds every event up to here durably.
  package var durableSequence: UInt64
  /// Runs held in memory by the queue (active ones and terminal ones not yet dropped).
  package var runsInMemory: Int
  /// Why the indexer stopped, if it did (it resumes from its checkpoint at the next start).
  package var failure: String?

  /// Events durable in the log and not yet in the index.
  package var lag: UInt64 { durableSequence - min(durableSequence, indexedSequence) }
}

/// Follows the log and keeps the run index up to date: woken after each group commit, it applies
/// the new durable events and commits every ``RunIndexOptions/commitInterval`` (or
/// ``RunIndexOptions/commitRuns`` runs), then tells the queue how far the index reaches.
final class RunIndexer: @unchecked Sendable {
  // The fold is used only on `queue`; the rest is under `control`.
  private let fold: IndexFold
  private let queue = DispatchQueue(label: "gps-run-indexer")
  private let options: RunIndexOptions
  private let durable: @Sendable () -> UInt64
  private let committed: @Sendable (UInt64) -> Void
  private let failed: @Sendable (QueueError) -> Void
  private struct Control {
    var scheduled = false
    var timerArmed = false
    var closed = false
    var lastCommit = ContinuousClock.now
    var indexed: UInt64 = 0
    var failure: QueueError?
    /// Thrown by the next step instead of indexing (tests).
    var injected: QueueError?
  }
  private let control = Mutex(Control())

  /// The next step fails with `error`, as a commit refused by SQLite would (tests).
  func inject(_ error: QueueError) {
    control.withLock { $0.injected = error }
    wake()
  }

  /// `durable` says how far the log is durable; `committed` is called (on the indexer's queue)
  /// after each commit with the sequence it reached, `failed` once, when indexing stops on an error.
  init(
    fold: IndexFold, options: RunIndexOptions, durable: @escaping @Sendable () -> UInt64,
    committed: @escaping @Sendable (UInt64) -> Void, failed: @escaping @Sendable (QueueError) -> Void = { _ in }
  ) {
    self.fold = fold
    self.options = options
    self.durable = durable
    self.committed = committed
    self.failed = failed
    let indexed = fold.committed
    control.withLock { $0.indexed = indexed }
  }

  var indexedSequence: UInt64 { control.withLock { $0.indexed } }
  var failure: QueueError? { control.withLock { $0.failure } }

  /// New events are durable: index them soon.
  func wake() {
    let schedule = control.withLock { control -> Bool in
      guard !control.scheduled, !control.closed, control.failure == nil else { return false }
      control.scheduled = true
      return true
    }
    if schedule { queue.async { self.step(forceCommit: false) } }
  }

  /// Indexes everything durable now and commits it before returning (for tests and a clean stop).
  func flush() throws(QueueError) {
    let result: Result<Void, QueueError> = queue.sync {
      self.step(forceCommit: true)
      if let failure = self.failure { return .failure(failure) }
      return .success(())
    }
    try result.get()
  }

  /// Indexes and commits everything durable, then writes a consistent copy of the index to `path`
  /// (SQLite's `VACUUM INTO`, a new file): a checkpoint a new copy of a store's log starts from.
  /// Returns the copy's checkpoint sequence.
  func copy(to path: String) throws(QueueError) -> UInt64 {
    let result: Result<UInt64, QueueError> = queue.sync {
      self.step(forceCommit: true)
      if let failure = self.failure { return .failure(failure) }
      do throws(QueueError) {
        try self.fold.store.connection.copy(into: path)
        return .success(self.fold.committed)
      } catch {
        return .failure(error)
      }
    }
    return try result.get()
  }

  /// Makes every commit so far durable against power loss, not only a crash (with `synchronous =
  /// NORMAL` the last commits live in the WAL until a checkpoint syncs it): before an archive,
  /// which relies on the checkpoint it read. Returns the checkpoint's sequence.
  func makeDurable() throws(QueueError) -> UInt64 {
    let result: Result<UInt64, QueueError> = queue.sync {
      if let failure = self.failure { return .failure(failure) }
      do throws(QueueError) {
        // A commit under synchronous = FULL syncs the WAL, and with it every commit before.
        try self.fold.store.connection.execute(
          """
          PRAGMA synchronous = FULL;
          BEGIN IMMEDIATE;
          UPDATE meta SET value = value WHERE key = 'format';
          COMMIT;
          PRAGMA synchronous = NORMAL;
          """)
        return .success(self.indexedSequence)
      } catch {
        return .failure(error)
      }
    }
    return try result.get()
  }

  /// Indexes and commits what is durable, and stops: a timer that fires later does nothing, so
  /// a queue reopened on the directory has the only indexer that writes. The WAL is then copied
  /// into the index's file and emptied: after a clean stop `runs.db` alone holds the checkpoint
  /// (a copy of the file is the whole index).
  func close() {
    queue.sync {
      self.step(forceCommit: true)
      self.control.withLock { $0.closed = true }
      if self.failure == nil { try? self.fold.store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)") }
    }
  }

  private func step(forceCommit: Bool) {
    let stopped = control.withLock { control in
      control.scheduled = false
      return control.closed || control.failure != nil
    }
    guard !stopped else { return }
    do throws(QueueError) {
      if let injected = control.withLock({ $0.injected }) { throw injected }
      try fold.catchUp(to: durable(), maxDirty: options.commitRuns)
      let now = ContinuousClock.now
      let due = control.withLock { now - $0.lastCommit >= options.commitInterval }
      let pending = !fold.dirty.isEmpty || fold.deploymentsChanged || fold.committed != fold.state.lastSequence
      if pending, forceCommit || due || fold.dirty.count >= options.commitRuns {
        try fold.commit()
        let sequence = fold.committed
        control.withLock {
          $0.lastCommit = now
          $0.indexed = sequence
        }
        committed(sequence)
      } else if pending {
        let arm = control.withLock { control -> Bool in
          guard !control.timerArmed else { return false }
          control.timerArmed = true
          return true
        }
        if arm {
          queue.asyncAfter(deadline: .now() + .microseconds(Int(options.commitInterval.micros))) {
            self.control.withLock { $0.timerArmed = false }
            self.step(forceCommit: false)
          }
        }
      }
    } catch {
      // Steps stop here: this is the only failure, reported once.
      control.withLock { $0.failure = error }
      failed(error)
    }
  }
}
