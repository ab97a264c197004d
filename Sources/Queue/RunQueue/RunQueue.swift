import Dispatch
package import GPSModel
import Synchronization

/// What opening a queue found.
package struct StartupReport: Sendable {
  /// The snapshot loaded (its last sequence), or nil when the whole log was replayed.
  package var snapshotSequence: UInt64?
  /// Snapshots skipped because they were damaged, unreadable or did not match the log.
  package var skippedSnapshots: [String]
  /// Events replayed after the snapshot.
  package var replayedEvents: UInt64
  package var recovery: RecoveryReport
  /// Time spent opening the log (lock, recovery), loading the snapshot, replaying the tail, and
  /// indexing the runs.
  package var openingLog: Duration = .zero
  package var loadingSnapshot: Duration = .zero
  package var replaying: Duration = .zero
  package var indexing: Duration = .zero
  /// With the run index: why it was rebuilt from the log, if it was.
  package var indexRebuilt: String?
}

/// The live, event-sourced run queue of one data directory.
///
/// Every command is validated against the current state by the same pure reducer replay uses
/// (``QueueState/apply(_:firstSequence:)``), appended to the ``EventLog`` and applied, all under one
/// lock, so events are applied in log order and an illegal transition is refused before anything
/// is written. The caller resumes once its events are durable. Concurrent commands share group
/// commits.
///
/// Queries see commands whose events are being made durable (at most one group commit ahead of the
/// disk). If a write fails, the log stops and so does the queue: reopen it to continue from what is
/// durable.
package final class RunQueue: Sendable {
  package let directory: String
  package let options: QueueOptions
  package let startup: StartupReport
  let log: EventLog
  let clock: any WallClock
  let snapshots: SnapshotStore
  let locked: Mutex<Locked>
  let snapshotWriter = DispatchQueue(label: "gps-snapshot-writer")
  let durableWaiters = DurableWaiters()
  let metrics: QueueMetrics?
  /// With ``QueueOptions/runIndex``: the indexer and the queue's connection to the index.
  let indexer: RunIndexer?
  let retiredReader: RetiredRunReader?
  private let queueHandle: QueueHandle?
  let fileSystem: any FileSystem
  /// One archive at a time.
  let archiving = Mutex(())
  /// The first sequence of the retained log (after archived or lost segments).
  let retainedStart: Mutex<UInt64>

  struct Locked {
    var state: QueueState
    var index: ReadyIndex
    /// The sequence the next event gets.
    var nextSequence: UInt64
    var eventsSinceSnapshot = 0
    var snapshotInFlight = false
    var lifecycle = QueueLifecycle.open
    /// Poked whenever a run may have become claimable (enqueued, re-queued, retried, a slot freed).
    var wakeSignals: [WakeSignal] = []
    /// Poked whenever a user asks to cancel a claimed run.
    var cancelSignals: [WakeSignal] = []
    /// Workers by id, as last seen claiming or watching for work (kept in memory, not logged).
    var workers: [String: WorkerSighting] = [:]
    /// Terminal runs indexed up to this sequence may have left memory (with the run index).
    var retiredThrough: UInt64 = 0
    /// A standby refuses commands: the leader's address, if known, to name in the refusal.
    var standbyOf: String??
  }

  /// Opens the queue in `directory`: takes its lock, recovers the log, loads the newest snapshot
  /// that matches the log and replays the events after it.
  package init(
    directory: String, options: QueueOptions = QueueOptions(), clock: any WallClock = SystemClock(),
    fileSystem: any FileSystem = PosixFileSystem()
  ) throws(QueueError) {
    self.directory = directory
    self.options = options
    self.clock = clock
    self.fileSystem = fileSystem
    metrics = options.metrics.map(QueueMetrics.init)
    var logOptions = options.log
    logOptions.metrics = logOptions.metrics ?? options.metrics
    let opening = ContinuousClock.now
    log = try EventLog(directory: directory, options: logOptions, fileSystem: fileSystem)
    snapshots = SnapshotStore(directory: directory, fileSystem: fileSystem)
    do throws(QueueError) {
      retainedStart = Mutex(
        try LogAnchor.read(logDirectory: log.logDirectory, fileSystem: fileSystem)?.firstSequence ?? 1)
      try snapshots.removeLeftovers()
      let loading = ContinuousClock.now
      var opened: OpenedIndex?
      if let indexOptions = options.runIndex {
        opened = try Self.openIndex(directory: directory, fileSystem: fileSystem, log: log, options: indexOptions)
      }
      let loaded =
        if let opened {
          (
            state: opened.state, snapshotSequence: UInt64?.none, skipped: [String](),
            loadTime: ContinuousClock.now - loading
          )
        } else {
          try Self.load(
            directory: directory, snapshots: snapshots, fileSystem: fileSystem, lastBatch: log.lastBatch)
        }
      guard loaded.state.lastSequence == log.lastSequence else {
        throw QueueError(
          code: .corrupt,
          message:
            "replay ended at event \(loaded.state.lastSequence) but the log holds \(log.lastSequence) events"
        )
      }
      let indexing = ContinuousClock.now
      let index = ReadyIndex(
        state: loaded.state, now: clock.now(), lateAfter: options.lateAfter, grace: options.leaseDuration)
      var report = StartupReport(
        snapshotSequence: loaded.snapshotSequence, skippedSnapshots: loaded.skipped,
        replayedEvents: loaded.state.lastSequence - (loaded.snapshotSequence ?? 0), recovery: log.recovery,
        openingLog: loading - opening, loadingSnapshot: loaded.loadTime,
        replaying: indexing - loading - loaded.loadTime,
        indexing: .now - indexing, indexRebuilt: opened?.rebuilt)
      if let opened { report.replayedEvents = opened.replayed }
      startup = report
      var initial = Locked(state: loaded.state, index: index, nextSequence: loaded.state.lastSequence + 1)
      if options.standby { initial.standbyOf = .some(nil) }
      locked = Mutex(initial)
      retiredReader = opened?.reader
      if let opened, let indexOptions = options.runIndex {
        let log = self.log
        let handle = QueueHandle()
        indexer = RunIndexer(
          fold: opened.fold, options: indexOptions, durable: { log.lastSequence },
          committed: { handle.queue?.indexCommitted(through: $0) },
          failed: { [metrics, report = options.onIndexFailure] error in
            metrics?.recordIndexFailure()
            report?(error)
          })
        queueHandle = handle
        // A read that finds a damaged row answers nothing from it; the indexer stops (reported
        // once, like any index failure) and the next open rebuilds the index from the log.
        let indexer = indexer
        opened.reader.onDamage.withLock {
          $0 = { [directory, fileSystem] error in
            RunStore.markForRebuild(directory: directory, because: error.message, fileSystem: fileSystem)
            indexer?.inject(error)
          }
        }
      } else {
        indexer = nil
        queueHandle = nil
      }
    } catch {
      log.close()
      throw error
    }
    queueHandle?.queue = self
    do throws(QueueError) {
      // Both write notes: a standby leaves them to the leader (the files are the store's copy).
      guard !options.standby else { return }
      // An archive interrupted after its note (README: the next open finishes it).
      _ = try archiving.withLock { _ throws(QueueError) in try finishInterruptedArchive() }
      // A decision to skip an event whose note was not written yet (`gps log skip-event` stopped).
      try recordSkipNotes()
    } catch {
      close(writingSnapshot: false)
      throw error
    }
    // A standby's log is a copy of the store's: what its recovery cut is copied again from there.
    if !log.recovery.isClean, !options.standby {
      // What was cut off is recorded in the log itself, so `gps history` shows it for good.
      do throws(QueueError) {
        try recordNote(.logTailTruncated(log.recovery.note))
      } catch {
        close(writingSnapshot: false)
        throw error
      }
    }
  }

  /// The newest matching snapshot plus the log after it.
  static func load(
    directory: String, snapshots: SnapshotStore, fileSystem: any FileSystem,
    lastBatch: (sequence: UInt64, hash: [UInt8])? = nil, skipping candidates: Set<UInt64> = []
  ) throws(QueueError) -> (state: QueueState, snapshotSequence: UInt64?, skipped: [String], loadTime: Duration) {
    let start = ContinuousClock.now
    let reader = LogReader(directory: directory, fileSystem: fileSystem)
    let (snapshot, skippedByStore) = try snapshots.loadNewest(matching: reader, lastBatch: lastBatch)
    var skipped = skippedByStore
    var state = QueueState()
    var snapshotSequence: UInt64?
    if let snapshot {
      if let decoded = QueueState(snapshotPayload: snapshot.payload), decoded.lastSequence == snapshot.lastSequence {
        state = decoded
        snapshotSequence = snapshot.lastSequence
      } else {
        skipped.append("snapshot at \(snapshot.lastSequence): written by another version of GPS")
      }
    }
    let loadTime = ContinuousClock.now - start
    if state.lastSequence == 0, try !reader.readsFromStart(),
      let anchor = try LogAnchor.read(logDirectory: reader.logDirectory, fileSystem: fileSystem)
    {
      throw anchor.noSnapshotCovers
    }
    // A snapshot of the whole log leaves nothing to replay: skip reading the last segment.
    if state.lastSequence != lastBatch?.sequence || state.lastSequence == 0 {
      state.skipping.candidates = candidates
      try replay(reader, into: &state)
    }
    return (state, snapshotSequence, skipped, loadTime)
  }

  static func replay(_ reader: LogReader, into state: inout QueueState) throws(QueueError) {
    state.skip(try SkippedEvents.read(logDirectory: reader.logDirectory, fileSystem: reader.fileSystem))
    do {
      try reader.read(from: state.lastSequence + 1) { try state.apply($0) }
    } catch let error as QueueError {
      throw error
    } catch {
      throw QueueError(code: .io, message: "reading the log failed: \(error)", cause: error)
    }
  }

  /// `signal` is signalled whenever a run may have become claimable: a scheduler waits on it
  /// instead of polling. Runs that become ready with time are found through ``nextDeadline``.
  package func notifyWhenWorkArrives(_ signal: WakeSignal) {
    locked.withLock { $0.wakeSignals.append(signal) }
  }

  /// Stops signalling `signal` (given to ``notifyWhenWorkArrives(_:)`` or
  /// ``notifyOnCancelRequests(_:)``).
  package func stopNotifying(_ signal: WakeSignal) {
    locked.withLock { locked in
      locked.wakeSignals.removeAll { $0 === signal }
      locked.cancelSignals.removeAll { $0 === signal }
    }
  }

  /// Returns once the log holds event `sequence` durably (at once if it does already), or when the
  /// queue stops or the task is cancelled. Watchers use it to deliver only durable events.
  package func waitUntilDurable(_ sequence: UInt64) async {
    await durableWaiters.wait(for: sequence) { log.lastSequence }
  }

  /// Wakes every ``waitUntilDurable(_:)`` caller, now and from now on: for ending the streams
  /// that follow the log before the queue closes.
  package func endDurableWaits() {
    durableWaiters.fail()
  }

  /// `signal` is signalled whenever cancellation of a claimed run is requested, so an in-process
  /// scheduler heartbeats at once instead of at its next interval.
  package func notifyOnCancelRequests(_ signal: WakeSignal) {
    locked.withLock { $0.cancelSignals.append(signal) }
  }

  /// Runs `tick()` whenever something falls due (a start, a lateness mark, a lease expiry), at
  /// least every `maximumWait`, until the task is cancelled.
  package func maintain(maximumWait: Duration = .seconds(1)) async throws {
    while !Task.isCancelled {
      let wait = nextDeadline.map { min(maximumWait, max(.milliseconds(1), $0 - clock.now())) } ?? maximumWait
      try await Task.sleep(for: wait)
      try await tick()
    }
  }

  /// How many runs are in each state (cheap: unlike ``state``, it does not make the next command
  /// copy the run table).
  package var counts: StateCounts { locked.withLock { $0.state.counts } }

  /// Brings the gauges of ``QueueOptions/metrics`` (runs by state, queue depth) up to date: for a
  /// metrics endpoint, before it reports.
  package func updateGauges() {
    guard let metrics else { return }
    metrics.record(counts)
  }

  /// A copy of the whole state. Holding it makes the next command copy the run table: for
  /// audits and tests, not for polling.
  package var state: QueueState { locked.withLock { $0.state } }

  /// Runs `body` on the current state under the queue's lock, without copying it: for queries
  /// such as listing runs. Keep it short; commands wait meanwhile.
  package func withState<T, E: Error>(_ body: (QueueState) throws(E) -> T) throws(E) -> T {
    try locked.withLock { locked throws(E) in try body(locked.state) }
  }

  /// The last event that is durable in the log; ``state`` may be up to one group commit ahead.
  package var durableSequence: UInt64 { log.lastSequence }

  /// The last durable batch's last sequence and hash (what a store's copy must end with).
  package var lastBatch: (sequence: UInt64, hash: [UInt8]) { log.lastBatch }

  /// The earliest time ``tick()`` has something to do (a start, a lateness mark, a lease expiry).
  package var nextDeadline: Timestamp? { locked.withLock { $0.index.nextDeadline } }

  /// Writes pending events and (unless told not to, e.g. to test recovery from periodic snapshots)
  /// a snapshot of the final state, and releases the directory.
  package func close(writingSnapshot: Bool = true) {
    let alreadyClosed = locked.withLock { $0.lifecycle.close() }
    guard !alreadyClosed else { return }
    defer { durableWaiters.fail() }
    log.close { [self] in
      snapshotWriter.sync {}
      if let indexer {
        indexer.close()
        return
      }
      let (state, failure) = locked.withLock { ($0.state, $0.lifecycle.failure) }
      let last = log.lastBatch
      if writingSnapshot, failure == nil, last.sequence == state.lastSequence, last.sequence > 0 {
        try? snapshots.write(
          Snapshot(lastSequence: last.sequence, batchHash: last.hash, payload: state.snapshotPayload()))
      }
    }
  }

  deinit { close() }
}

/// The queue, for the indexer's callback: set once the queue exists, and not kept alive by it.
final class QueueHandle: @unchecked Sendable {
  weak var queue: RunQueue?
}
