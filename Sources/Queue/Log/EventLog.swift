import CoreMetrics
import Dispatch
import Foundation
package import GPSModel
import SwiftProtobuf
import Synchronization

/// The durable, checksummed, hash-chained append-only log of GPS.
///
/// One writer per data directory (an exclusive lock on `LOCK`). Concurrent ``append(_:)`` calls are
/// gathered into one batch: one `write` and, with ``FsyncPolicy/always``, one `fdatasync`; each caller
/// resumes only when its records are durable and learns their sequence numbers. After a failed write
/// or sync every pending and later append fails: nothing is retried and reported as durable.
package final class EventLog: Sendable {
  package let directory: String
  package let logDirectory: String
  package let options: LogOptions
  /// What opening repaired.
  package let recovery: RecoveryReport

  /// What a durable submission got.
  package struct Receipt: Sendable {
    /// The sequences of its records.
    package var sequences: ClosedRange<UInt64>
    /// The SHA-256 of the batch frame, when the batch ends with these records (always so for a
    /// submission that asked to end its batch); a snapshot of the state after them can be
    /// tagged with it.
    package var batchHash: [UInt8]?
  }

  /// Called once the records are durable or have failed.
  package typealias Completion = @Sendable (Result<Receipt, QueueError>) -> Void

  private struct Pending {
    var records: [[UInt8]]
    /// A batch written as it is (from the store the log copies): alone, never joined by others.
    var sealed: SealedBatch? = nil
    var bytes: Int
    var endsBatch: Bool
    var completion: Completion
    var submitted: ContinuousClock.Instant
  }

  private struct State {
    var pending: [Pending] = []
    var stopped: QueueError?
    var closing = false
    /// The writer found nothing to do and waits for a signal; only then do appenders signal, so a
    /// busy writer is not woken once per append.
    var writerWaiting = false
    var lastSequence: UInt64
    var lastHash: [UInt8]
    /// The sequence the next submitted record gets: batches are written in submission order.
    var nextSequence: UInt64
  }

  /// Only the writer thread touches these.
  private final class WriterContext: @unchecked Sendable {
    var file: any AppendableFile
    var segmentSize: Int
    var nextSequence: UInt64
    var lastHash: [UInt8]
    var dirty = false
    var lastSync = ContinuousClock.now

    init(file: any AppendableFile, segmentSize: Int, nextSequence: UInt64, lastHash: [UInt8]) {
      self.file = file
      self.segmentSize = segmentSize
      self.nextSequence = nextSequence
      self.lastHash = lastHash
    }
  }

  /// Batches of at most this many appends are acknowledged by the writer thread itself.
  static let inlineAcknowledgements = 8

  private let fileSystem: any FileSystem
  private let lock: DirectoryLock
  private let state: Mutex<State>
  private let wakeUp = DispatchSemaphore(value: 0)
  private let acknowledger = DispatchQueue(label: "gps-log-acknowledger")
  private let finished = DispatchSemaphore(value: 0)
  private let context: WriterContext
  private let metrics: LogMetrics?
  /// Where batches are committed before the files record them (``LogOptions/store``); set when a
  /// standby takes the lead.
  private let store: Mutex<(any BatchStore)?>

  /// Opens (creating if needed) the log in `directory/log`, recovering an interrupted append.
  ///
  /// Fails if another process holds the directory, or with ``QueueError/Code-swift.struct/corrupt`` naming
  /// segment, offset and sequence when a batch other than an interrupted last one is damaged.
  package init(
    directory: String, options: LogOptions = LogOptions(), fileSystem: any FileSystem = PosixFileSystem()
  ) throws(QueueError) {
    self.directory = directory
    self.logDirectory = directory + "/log"
    self.options = options
    self.fileSystem = fileSystem
    metrics = options.metrics.map(LogMetrics.init)
    store = Mutex(options.store)
    try fileSystem.createDirectory(directory)
    lock = try DirectoryLock(directory: directory, options: options.lock)
    do throws(QueueError) {
      try fileSystem.createDirectory(logDirectory)
      let recovered = try Self.recover(
        logDirectory: logDirectory, scanSealedSegments: options.scanSealedSegments, fileSystem: fileSystem)
      recovery = recovered.report
      guard recovered.lastSequence < .max else {
        throw QueueError(
          code: .corrupt,
          message:
            "the log's last batch ends at sequence \(recovered.lastSequence), the largest there is: no event can follow it; nothing was changed"
        )
      }
      let file = try fileSystem.openForAppend(logDirectory + "/" + recovered.segment, create: false)
      context = WriterContext(
        file: file, segmentSize: recovered.segmentSize, nextSequence: recovered.lastSequence + 1,
        lastHash: recovered.lastHash)
      state = Mutex(
        State(
          lastSequence: recovered.lastSequence, lastHash: recovered.lastHash,
          nextSequence: recovered.lastSequence + 1))
    } catch {
      lock.unlock()
      throw error
    }
    let thread = Thread { [self] in writerLoop() }
    thread.name = "gps-log-writer"
    thread.start()
  }

  /// The sequence of the last durable record (0 when the log is empty).
  package var lastSequence: UInt64 { state.withLock { $0.lastSequence } }
  /// The SHA-256 of the last batch frame (zeros when the log is empty).
  package var lastBatchHash: [UInt8] { state.withLock { $0.lastHash } }
  /// The last durable sequence and the hash of the batch that ends there, read together.
  package var lastBatch: (sequence: UInt64, hash: [UInt8]) { state.withLock { ($0.lastSequence, $0.lastHash) } }

  /// Appends `records` as consecutive sequences and returns them once they are durable (per the
  /// fsync policy). Throws ``QueueError`` when the writer has stopped or the log is closed.
  package func append(_ records: [[UInt8]]) async throws -> ClosedRange<UInt64> {
    try await withUnsafeThrowingContinuation { continuation in
      do {
        try submit(records) { continuation.resume(with: $0.map(\.sequences)) }
      } catch {
        continuation.resume(throwing: error)
      }
    }
  }

  /// Queues `records` for the next batch without waiting and returns the sequences they will have.
  ///
  /// Records are written in the order they are submitted, so a caller that submits under its own
  /// lock knows the sequence of each record before it is durable. `completion` runs on the log's
  /// acknowledger queue, in sequence order, once the records are durable or have failed; after a
  /// failure nothing submitted later is written. With `endsBatch`, no later record joins their
  /// batch, so the receipt carries the batch's hash.
  @discardableResult
  package func submit(
    _ records: [[UInt8]], endsBatch: Bool = false, completion: @escaping Completion
  ) throws(QueueError) -> ClosedRange<UInt64> {
    guard !records.isEmpty else {
      throw QueueError(code: .invalidArgument, message: "append needs at least one record")
    }
    let bytes = records.reduce(0) { $0 + 4 + $1.count }
    let (result, wake) = state.withLock { state -> (Result<ClosedRange<UInt64>, QueueError>, Bool) in
      if let stopped = state.stopped { return (.failure(stopped), false) }
      if state.closing {
        return (.failure(QueueError(code: .closed, message: "the log is closed; reopen it to append")), false)
      }
      state.pending.append(
        Pending(records: records, bytes: bytes, endsBatch: endsBatch, completion: completion, submitted: .now))
      let range = state.nextSequence...(state.nextSequence + UInt64(records.count) - 1)
      state.nextSequence += UInt64(records.count)
      defer { state.writerWaiting = false }
      return (.success(range), state.writerWaiting)
    }
    if wake { wakeUp.signal() }
    return try result.get()
  }

  /// Queues a batch that is already sealed (read from the store this log copies) to be written as
  /// it is: the same bytes, so the same hash. It must continue the log: its first sequence the next
  /// one, its previous hash the last batch's; otherwise the writer refuses it and stops. The
  /// store is not asked to commit it (it came from there).
  package func submit(sealed batch: SealedBatch, completion: @escaping Completion) throws(QueueError) {
    let bytes = batch.frame.count
    let records = [[UInt8]](repeating: [], count: Int(batch.lastSequence - batch.firstSequence + 1))
    let (failure, wake) = state.withLock { state -> (QueueError?, Bool) in
      if let stopped = state.stopped { return (stopped, false) }
      if state.closing {
        return (QueueError(code: .closed, message: "the log is closed; reopen it to append"), false)
      }
      guard batch.firstSequence == state.nextSequence else {
        return (
          QueueError(
            code: .corrupt,
            message:
              "the store's batch begins at sequence \(batch.firstSequence) but the local log continues at \(state.nextSequence)"
          ), false
        )
      }
      state.pending.append(
        Pending(records: records, sealed: batch, bytes: bytes, endsBatch: true, completion: completion, submitted: .now)
      )
      state.nextSequence = batch.lastSequence + 1
      defer { state.writerWaiting = false }
      return (nil, state.writerWaiting)
    }
    if wake { wakeUp.signal() }
    if let failure { throw failure }
  }

  /// From now on, every batch this log encodes is committed to `store` before the files record it
  /// (a standby that took the lead). Batches already submitted are written as they are.
  package func commit(to store: any BatchStore) {
    self.store.withLock { $0 = store }
  }

  /// Where this log commits its batches first, if anywhere.
  package var batchStore: (any BatchStore)? { store.withLock { $0 } }

  /// Stops accepting appends, writes what is pending, syncs, runs `beforeUnlocking` (everything
  /// acknowledged is durable then, and the directory still ours), and releases the lock.
  package func close(beforeUnlocking: () -> Void = {}) {
    let alreadyClosing = state.withLock { state in
      defer { state.closing = true }
      return state.closing
    }
    guard !alreadyClosing else { return }
    wakeUp.signal()
    finished.wait()
    acknowledger.sync {}
    // After a failed write or sync nothing is retried: a second fsync can report success for pages
    // the kernel already dropped.
    if options.fsync != .none, context.dirty, state.withLock({ $0.stopped == nil }) { try? context.file.sync() }
    context.file.close()
    beforeUnlocking()
    lock.unlock()
  }

  // MARK: Writer thread

  private func writerLoop() {
    while true {
      let taken = state.withLock { state -> (batch: [Pending], exit: Bool) in
        guard !state.pending.isEmpty else {
          state.writerWaiting = !state.closing
          return ([], state.closing)
        }
        var size = 0
        var count = 0
        for pending in state.pending {
          if count > 0 && (pending.sealed != nil || size + pending.bytes > options.maxBatchBytes) { break }
          size += pending.bytes
          count += 1
          if pending.endsBatch || pending.sealed != nil { break }
        }
        let batch = Array(state.pending.prefix(count))
        state.pending.removeFirst(count)
        return (batch, false)
      }
      if taken.exit { break }
      if taken.batch.isEmpty {
        waitForWork()
        continue
      }
      write(taken.batch)
    }
    finished.signal()
  }

  private func waitForWork() {
    if case .interval(let interval) = options.fsync, context.dirty {
      let due = context.lastSync + interval
      let now = ContinuousClock.now
      if now >= due {
        syncForInterval()
        return
      }
      let nanoseconds =
        (due - now).components.attoseconds / 1_000_000_000 + (due - now).components.seconds * 1_000_000_000
      if wakeUp.wait(timeout: .now() + .nanoseconds(Int(nanoseconds))) == .timedOut { syncForInterval() }
    } else {
      wakeUp.wait()
    }
  }

  private func syncForInterval() {
    do {
      let syncing = ContinuousClock.now
      try context.file.sync()
      metrics?.fsync.record(.now - syncing)
      context.dirty = false
      context.lastSync = .now
    } catch {
      stop(error, failing: [])
    }
  }

  private func write(_ batch: [Pending]) {
    if let stopped = state.withLock({ $0.stopped }) {
      acknowledger.async { for pending in batch { pending.completion(.failure(stopped)) } }
      return
    }
    let base = context.nextSequence
    let records = batch.flatMap(\.records)
    let frame: [UInt8]
    let hash: [UInt8]
    if let sealed = batch.first?.sealed {
      guard sealed.firstSequence == base, (try? sealed.header.previousHash) == context.lastHash else {
        stop(
          QueueError(
            code: .corrupt,
            message:
              "the store's batch at sequence \(sealed.firstSequence) does not continue the local log (which ends at \(base - 1)): its previous hash differs"
          ), failing: batch)
        return
      }
      frame = sealed.frame
      hash = sealed.hash
    } else {
      frame = LogFormat.encodeBatch(
        baseSequence: base, records: records, previousHash: context.lastHash,
        compressionThreshold: options.compressionThreshold)
      hash = frame.withUnsafeBytes { LogFormat.hash(ofFrame: $0) }
      if let store = store.withLock({ $0 }) {
        // Committed where the log lives before the local copy records it; a refusal stops the
        // writer, and nobody in the batch is acknowledged.
        do {
          try store.commit(
            SealedBatch(
              firstSequence: base, lastSequence: base + UInt64(records.count) - 1, frame: frame, hash: hash))
        } catch {
          stop(error, failing: batch, inStore: true)
          return
        }
      }
    }
    do {
      if context.segmentSize > LogFormat.segmentHeaderSize && context.segmentSize + frame.count > options.segmentSize {
        try rollSegment(firstSequence: base)
      }
      try context.file.append(frame)
      context.segmentSize += frame.count
      context.dirty = true
      switch options.fsync {
      case .always:
        let syncing = ContinuousClock.now
        try context.file.sync()
        metrics?.fsync.record(.now - syncing)
        context.dirty = false
      case .interval(let interval):
        if ContinuousClock.now - context.lastSync >= interval { syncForInterval() }
      case .none:
        break
      }
    } catch {
      stop(error, failing: batch)
      return
    }
    context.nextSequence = base + UInt64(records.count)
    context.lastHash = hash
    if let metrics {
      let durable = ContinuousClock.now
      metrics.batchEvents.record(records.count)
      metrics.batchBytes.record(frame.count)
      for pending in batch { metrics.append.record(durable - pending.submitted) }
    }
    state.withLock { state in
      state.lastSequence = context.nextSequence - 1
      state.lastHash = hash
    }
    let acknowledge: @Sendable () -> Void = {
      var next = base
      for (index, pending) in batch.enumerated() {
        let range = next...(next + UInt64(pending.records.count) - 1)
        next += UInt64(pending.records.count)
        pending.completion(.success(Receipt(sequences: range, batchHash: index == batch.count - 1 ? hash : nil)))
      }
    }
    // Resuming hundreds of appenders takes as long as a fast fsync, so a second thread does it and
    // the writer starts the next batch at once; a few are resumed here, saving a thread switch.
    if batch.count <= Self.inlineAcknowledgements {
      acknowledger.sync(execute: acknowledge)
    } else {
      acknowledger.async(execute: acknowledge)
    }
  }

  /// Starts a new segment: syncs the old one, creates the file with its header, syncs file and directory.
  private func rollSegment(firstSequence: UInt64) throws(QueueError) {
    if context.dirty {
      try context.file.sync()
      context.dirty = false
    }
    let path = logDirectory + "/" + LogFormat.segmentName(firstSequence: firstSequence)
    let file = try fileSystem.openForAppend(path, create: true)
    try file.append(LogFormat.segmentHeader(firstSequence: firstSequence))
    try file.sync()
    try fileSystem.syncDirectory(logDirectory)
    context.file.close()
    context.file = file
    context.segmentSize = LogFormat.segmentHeaderSize
  }

  private func stop(_ error: any Error, failing batch: [Pending], inStore: Bool = false) {
    let cause = error as? QueueError
    let stopped =
      inStore
      ? QueueError(
        code: cause?.code == .fenced ? .fenced : .writerStopped,
        message:
          "the log writer stopped: the store did not commit a batch (\(cause?.message ?? "\(error)")); data acknowledged before is safe",
        cause: error)
      : QueueError(
        code: .writerStopped,
        message:
          "the log writer stopped after a failed write or sync (\(cause?.message ?? "\(error)")); data acknowledged before is safe; fix the cause and restart",
        cause: error)
    let waiting = state.withLock { state in
      state.stopped = state.stopped ?? stopped
      defer { state.pending = [] }
      return state.pending
    }
    acknowledger.async { for pending in batch + waiting { pending.completion(.failure(stopped)) } }
  }
}

/// The log's metrics (see ``LogOptions/metrics``).
struct LogMetrics: Sendable {
  enum Name {
    static let append = "gps_log_append_seconds"
    static let fsync = "gps_log_fsync_seconds"
    static let batchEvents = "gps_log_batch_events"
    static let batchBytes = "gps_log_batch_bytes"
  }

  /// From an append's submission until its batch is durable (written and, per the policy, synced).
  let append: CoreMetrics.Timer
  let fsync: CoreMetrics.Timer
  let batchEvents: Recorder
  let batchBytes: Recorder

  init(factory: any MetricsFactory) {
    append = CoreMetrics.Timer(label: Name.append, factory: factory)
    fsync = CoreMetrics.Timer(label: Name.fsync, factory: factory)
    batchEvents = Recorder(label: Name.batchEvents, factory: factory)
    batchBytes = Recorder(label: Name.batchBytes, factory: factory)
  }
}
