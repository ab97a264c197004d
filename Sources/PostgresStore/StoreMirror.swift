import Foundation
package import GPSModel
package import Queue
import Synchronization

/// A data directory's segment files as a local copy of a store's log: the same batches, byte for
/// byte, up to where the store's log ends. Everything that reads the files (replay, the run
/// index, history, verify) reads the store's log through them.
package enum StoreMirror {
  /// The file in a data directory that names the cluster whose store it copies.
  package static func clusterFile(in directory: String) -> String { directory + "/cluster" }

  /// Brings the segment files of `directory` up to the store's log: checks that they are a copy
  /// of it (the cluster's id, and the store's hash at the last local batch), then appends the
  /// store's later batches as they are. Returns the last sequence copied. Refuses, changing
  /// nothing, a directory that holds another log.
  @discardableResult
  package static func catchUp(
    directory: String, store: PostgresStore, options: LogOptions = LogOptions()
  ) async throws(QueueError) -> UInt64 {
    try checkCluster(directory: directory, store: store)
    let stored = try await store.anchor()
    if let stored, try isEmptyCopy(directory) {
      // The store's head was archived: a new copy starts from its checkpoint, at its anchor.
      try PosixFileSystem().createDirectory(directory)
      try PosixFileSystem().createDirectory(directory + "/index")
      let checkpoint = directory + "/index/checkpoint-from-store.db"
      defer { try? FileManager.default.removeItem(atPath: checkpoint) }
      try await store.downloadCheckpoint(to: checkpoint)
      try RunQueue.beginCopy(directory: directory, anchor: stored.anchor, checkpoint: checkpoint)
    }
    var logOptions = options
    logOptions.store = nil
    logOptions.fsync = .none
    let log = try EventLog(directory: directory, options: logOptions)
    defer { log.close() }
    let local = log.lastBatch
    if let stored, local.sequence + 1 < stored.anchor.firstSequence {
      throw QueueError(
        code: .invalidArgument,
        message:
          "the data directory \(directory) holds the store's log up to sequence \(local.sequence), but the store \(store.location) archived its log up to sequence \(stored.anchor.firstSequence - 1) meanwhile: give this server an empty --data-dir (a new copy starts from the store's checkpoint)"
      )
    }
    if local.sequence > 0 {
      let stored =
        local.sequence + 1 == stored?.anchor.firstSequence
        ? stored?.anchor.previousHashBytes : try await store.hash(ofBatchEndingAt: local.sequence)
      guard stored == local.hash else {
        let storeEnd = try await store.lastBatch()?.sequence ?? 0
        throw QueueError(
          code: .invalidArgument,
          message: storeEnd < local.sequence && stored == nil
            ? "the data directory \(directory) holds events up to sequence \(local.sequence) but the store \(store.location) ends at \(storeEnd): it is not a copy of this store's log; move it with `gps log migrate` or give this server an empty --data-dir"
            : "the data directory \(directory) holds a log that differs from the store \(store.location)'s at sequence \(local.sequence): it is not a copy of this store's log; give this server an empty --data-dir"
        )
      }
    }
    var last = local.sequence
    while true {
      let batches = try await store.batches(after: last)
      guard !batches.isEmpty else { break }
      let failure = Mutex<QueueError?>(nil)
      let pending = DispatchGroup()
      for batch in batches {
        pending.enter()
        try log.submit(sealed: batch) { result in
          if case .failure(let error) = result { failure.withLock { $0 = $0 ?? error } }
          pending.leave()
        }
      }
      await withCheckedContinuation { continuation in
        pending.notify(queue: .global()) { continuation.resume() }
      }
      if let error = failure.withLock({ $0 }) { throw error }
      last = batches.last!.lastSequence
    }
    try recordCluster(directory: directory, store: store)
    return last
  }

  /// Whether `directory` holds no log yet (no segment, no anchor).
  static func isEmptyCopy(_ directory: String) throws(QueueError) -> Bool {
    let logDirectory = directory + "/log"
    guard FileManager.default.fileExists(atPath: logDirectory) else { return true }
    let fileSystem = PosixFileSystem()
    guard try EventLog.segmentNames(in: logDirectory, fileSystem: fileSystem).isEmpty else { return false }
    return try LogAnchor.read(logDirectory: logDirectory, fileSystem: fileSystem) == nil
  }

  /// Refuses a data directory that copies another cluster's store.
  static func checkCluster(directory: String, store: PostgresStore) throws(QueueError) {
    guard let data = FileManager.default.contents(atPath: clusterFile(in: directory)),
      let text = String(data: data, encoding: .utf8)
    else { return }
    let id = text.split(separator: "\n").first.map(String.init) ?? ""
    guard id == store.clusterID else {
      throw QueueError(
        code: .invalidArgument,
        message:
          "the data directory \(directory) is a copy of another GPS cluster's store (cluster \(id.prefix(40)), this store's is \(store.clusterID)); give this server an empty --data-dir"
      )
    }
  }

  static func recordCluster(directory: String, store: PostgresStore) throws(QueueError) {
    let path = clusterFile(in: directory)
    let text = "\(store.clusterID)\n\(store.location)\n"
    if let data = FileManager.default.contents(atPath: path), String(data: data, encoding: .utf8) == text { return }
    try PosixFileSystem().writeAtomically(path, contents: Array(text.utf8))
  }
}
