import Foundation
package import GPSModel
import Queue

/// `gps log migrate`: a log moved between a data directory and a store, batch for batch, byte for
/// byte: the same sequences, the same frames, so the same hash chain on both sides.
package enum LogMigration {
  /// What a migration copied and where the log ends.
  package struct Report: Sendable {
    package var copiedBatches = 0
    package var copiedEvents: UInt64 = 0
    /// Batches the target held already (an interrupted migration continued).
    package var skippedBatches = 0
    package var lastSequence: UInt64 = 0
    package var lastHash: [UInt8] = LogFormat.zeroHash
  }

  /// Copies the log of `directory` into `store`, whose log must be empty or a beginning of it (a
  /// migration that stopped is continued). Holds the directory's lock and the store's lead for its
  /// duration: no server may use either. A log whose head was archived (or lost) takes its anchor
  /// and its run index along, as the checkpoint the store's new copies start from.
  package static func toStore(
    directory: String, store: PostgresStore, progress: @escaping (Report) -> Void = { _ in }
  ) async throws(QueueError) -> Report {
    var options = LogOptions()
    options.fsync = .none
    let log = try EventLog(directory: directory, options: options)
    defer { log.close() }
    let fileSystem = PosixFileSystem()
    let anchor = try LogAnchor.read(logDirectory: log.logDirectory, fileSystem: fileSystem)
    let serverID = "gps-log-migrate-\(UUID().uuidString.prefix(8).lowercased())"
    let lease = Duration.seconds(60)
    guard let epoch = try await store.acquire(serverID: serverID, address: "gps log migrate", lease: lease) else {
      let leader = try await store.leader()
      throw QueueError(
        code: .locked,
        message:
          "\(leader.address.isEmpty ? "a server" : leader.address) leads the store \(store.location): stop every server of the store before migrating into it"
      )
    }
    var report = Report()
    do throws(QueueError) {
      if let anchor { try await carry(anchor, of: directory, log: log, into: store, epoch: epoch, serverID: serverID) }
      let stored = try await store.lastBatch()
      var renewed = ContinuousClock.now
      for name in try EventLog.segmentNames(in: log.logDirectory, fileSystem: fileSystem) {
        let scan = SegmentScan(name: name, bytes: try fileSystem.read(log.logDirectory + "/" + name, from: 0))
        for located in scan.batches {
          let batch = try SealedBatch(frame: Array(scan.frame(of: located)))
          if let stored, batch.lastSequence <= stored.sequence {
            if batch.lastSequence == stored.sequence, batch.hash != stored.hash {
              throw QueueError(
                code: .invalidArgument,
                message:
                  "the store \(store.location) holds another log than \(directory) (they differ at sequence \(stored.sequence)): migrate into an empty database"
              )
            }
            report.skippedBatches += 1
            continue
          }
          if let stored, report.copiedBatches == 0, batch.firstSequence != stored.sequence + 1 {
            throw QueueError(
              code: .invalidArgument,
              message:
                "the store \(store.location) holds a log that ends at sequence \(stored.sequence), which is not where a batch of \(directory) ends: migrate into an empty database"
            )
          }
          try await store.insert(batch, epoch: epoch, serverID: serverID)
          report.copiedBatches += 1
          report.copiedEvents += batch.lastSequence - batch.firstSequence + 1
          report.lastSequence = batch.lastSequence
          report.lastHash = batch.hash
          if ContinuousClock.now - renewed > lease / 4 {
            guard try await store.renew(epoch: epoch, serverID: serverID, lease: lease) else {
              throw QueueError(code: .fenced, message: "another server took the lead of the store while migrating")
            }
            renewed = .now
            progress(report)
          }
        }
      }
      let local = log.lastBatch
      let end = try await store.lastBatch()
      guard end?.sequence == local.sequence, end?.hash == local.hash else {
        throw QueueError(
          code: .corrupt,
          message:
            "after migrating, the store ends at sequence \(end?.sequence ?? 0) but \(directory) at \(local.sequence): the store's log differs"
        )
      }
      report.lastSequence = local.sequence
      report.lastHash = local.hash
    } catch {
      try? await store.release(epoch: epoch, serverID: serverID)
      throw error
    }
    try await store.release(epoch: epoch, serverID: serverID)
    return report
  }

  /// A log whose head was archived (or lost) goes to the store as a server's archive leaves it:
  /// its anchor, and its run index as the checkpoint new copies start from. Into an empty store
  /// (or one that holds this anchor already, a migration continued).
  private static func carry(
    _ anchor: LogAnchor, of directory: String, log: EventLog, into store: PostgresStore, epoch: Int64,
    serverID: String
  ) async throws(QueueError) {
    if let stored = try await store.anchor() {
      guard stored.anchor.firstSequence == anchor.firstSequence,
        stored.anchor.previousHashBytes == anchor.previousHashBytes
      else {
        throw QueueError(
          code: .invalidArgument,
          message:
            "the store \(store.location) holds another log than \(directory) (its log begins at sequence \(stored.anchor.firstSequence), this one's at \(anchor.firstSequence)): migrate into an empty database"
        )
      }
      return
    }
    guard try await store.lastBatch() == nil else {
      throw QueueError(
        code: .invalidArgument,
        message:
          "the store \(store.location) holds a log from sequence 1, and \(directory)'s begins at \(anchor.firstSequence): migrate into an empty database"
      )
    }
    let checkpoint = directory + "/index/checkpoint-for-store.db"
    try? FileManager.default.removeItem(atPath: checkpoint)
    defer { try? FileManager.default.removeItem(atPath: checkpoint) }
    let copied = try RunQueue.copyRunIndex(directory: directory, to: checkpoint)
    let reader = LogReader(directory: directory)
    guard let copied, copied.sequence >= anchor.firstSequence, copied.sequence <= log.lastSequence,
      try reader.batchHash(endingAt: copied.sequence) == copied.batchHash
    else {
      throw QueueError(
        code: .invalidArgument,
        message:
          "the log of \(directory) begins at sequence \(anchor.firstSequence) (its head was archived or lost), and its run index does not hold the state there: open it once with gps (`gps flow-run ls --data-dir \(directory)` brings the index up to date), then migrate again"
      )
    }
    try await store.commitArchive(
      anchor: anchor, deleted: false, checkpointFile: checkpoint, epoch: epoch, serverID: serverID)
  }

  /// Copies the store's log into `directory`, which must be empty or missing: a data directory of
  /// the file log (no server needs the store to use it).
  package static func fromStore(store: PostgresStore, directory: String) async throws(QueueError) -> Report {
    let existing = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    guard existing.isEmpty else {
      throw QueueError(
        code: .invalidArgument,
        message: "\(directory) is not empty: migrate the store's log into an empty or new directory")
    }
    let last = try await StoreMirror.catchUp(directory: directory, store: store)
    // A file log of its own now, not a copy of the store.
    try? FileManager.default.removeItem(atPath: StoreMirror.clusterFile(in: directory))
    let stored = try await store.lastBatch()
    var report = Report()
    report.lastSequence = last
    report.lastHash = stored?.hash ?? LogFormat.zeroHash
    report.copiedEvents = last
    return report
  }
}
