import Foundation
package import GPSModel
import SwiftProtobuf

/// What ``RunQueue/acceptLoss(directory:acceptedBy:clock:fileSystem:)`` accepted and recorded.
package struct LossAcceptance: Sendable {
  package struct Loss: Sendable, Hashable {
    package var missing: ClosedRange<UInt64>
    /// What showed the loss.
    package var evidence: String
    /// Files moved aside, relative to the data directory.
    package var setAside: [String]
  }

  package var losses: [Loss] = []
  /// The anchor written when the log's first segments are gone.
  package var anchor: LogAnchor?
  /// The sequences of the `LogLossAccepted` events that record each loss in the log.
  package var noteSequences: [UInt64] = []
}

extension RunQueue {
  /// Accepts that sequences the log once held are gone, for good, and records it in the log.
  ///
  /// Two losses are accepted. The first segments deleted: an anchor (`log/ANCHOR`) then says where
  /// the log begins and with which hash, so the chain is still verified from there; this needs a
  /// snapshot that covers the lost sequences and matches the log, or the runs they held could not be
  /// rebuilt. The last segments deleted or cut: the snapshots that cover sequences past the log's
  /// end are moved to `snapshots/lost/`. Each loss becomes a ``Gps_V1_LogLossAccepted`` event. A gap
  /// in the middle of the log is not a loss this accepts (`EventLog.repair` cuts the log there).
  /// Takes the directory's lock: no server may be running.
  package static func acceptLoss(
    directory: String, acceptedBy: String, clock: any WallClock = SystemClock(),
    fileSystem: any FileSystem = PosixFileSystem()
  ) throws(QueueError) -> LossAcceptance {
    var result = LossAcceptance()
    do {
      let lock = try DirectoryLock(directory: directory)
      defer { lock.unlock() }
      let logDirectory = directory + "/log"
      let reader = LogReader(directory: directory, fileSystem: fileSystem)
      let store = SnapshotStore(directory: directory, fileSystem: fileSystem)
      let snapshots = try store.intactSnapshots()
      // The run index is a checkpoint too: of every run up to its sequence.
      let indexPath = RunStore.path(in: directory)
      let indexed: RunStore.Checkpoint? =
        if try fileSystem.size(of: indexPath) != nil {
          try? RunStore(directory: directory, fileSystem: fileSystem, schema: false).checkpoint()
        } else {
          nil
        }
      let names = try EventLog.segmentNames(in: logDirectory, fileSystem: fileSystem)
      let start = try LogAnchor.read(logDirectory: logDirectory, fileSystem: fileSystem)?.firstSequence ?? 1
      if let name = names.first, let first = LogFormat.firstSequence(ofSegmentNamed: name), first > start {
        let scan = SegmentScan(name: name, bytes: try fileSystem.read(logDirectory + "/" + name, from: 0))
        guard let firstBatch = scan.batches.first else {
          throw QueueError(
            code: .corrupt, message: "segment \(name), the first the log has, holds no complete batch to anchor it")
        }
        let previousHash = firstBatch.header.previousHash
        let covered = snapshots.contains { _, snapshot in
          guard snapshot.lastSequence >= first - 1 else { return false }
          if snapshot.lastSequence == first - 1 { return snapshot.batchHash == previousHash }
          return (try? reader.batchHash(endingAt: snapshot.lastSequence)) == snapshot.batchHash
        }
        let indexCovers =
          if let indexed, indexed.sequence >= first - 1 {
            indexed.sequence == first - 1
              ? indexed.batchHash == previousHash
              : (try? reader.batchHash(endingAt: indexed.sequence)) == indexed.batchHash
          } else {
            false
          }
        guard covered || indexCovers else {
          throw QueueError(
            code: .dataLost,
            message:
              "sequences \(start)–\(first - 1) are missing and no snapshot covers them, so the runs they held cannot be rebuilt; only restoring the segment files before \(name) recovers this log",
            missing: start...(first - 1))
        }
        let anchor = LogAnchor(
          firstSequence: first, previousHash: Data(previousHash), acceptedBy: acceptedBy,
          acceptedAt: clock.now().description)
        try anchor.write(logDirectory: logDirectory, fileSystem: fileSystem)
        result.anchor = anchor
        result.losses.append(
          .init(
            missing: start...(first - 1),
            evidence: "the log's first segment \(name) starts at sequence \(first)", setAside: []))
      }
      let end = try reader.lastSequence()
      let beyond = snapshots.filter { $0.snapshot.lastSequence > end }
      if let newest = beyond.first {
        try fileSystem.createDirectory(store.directory + "/lost")
        var moved: [String] = []
        for (name, _) in beyond {
          try fileSystem.rename(store.directory + "/" + name, to: store.directory + "/lost/" + name)
          moved.append("snapshots/lost/" + name)
        }
        try fileSystem.syncDirectory(store.directory)
        result.losses.append(
          .init(
            missing: (end + 1)...newest.snapshot.lastSequence,
            evidence:
              "snapshot \(newest.name) covers sequences up to \(newest.snapshot.lastSequence) but the log ends at \(end)",
            setAside: moved))
      }
      if let indexed, indexed.sequence > end {
        // The index is derived: set aside, it is rebuilt from what the log holds.
        try fileSystem.createDirectory(directory + "/index/lost")
        var moved: [String] = []
        for suffix in RunStore.fileSuffixes where try fileSystem.size(of: indexPath + suffix) != nil {
          let name = "runs.db" + suffix
          try fileSystem.rename(indexPath + suffix, to: directory + "/index/lost/" + name)
          moved.append("index/lost/" + name)
        }
        try fileSystem.syncDirectory(directory + "/index")
        if !result.losses.contains(where: { $0.missing.lowerBound == end + 1 }) {
          result.losses.append(
            .init(
              missing: (end + 1)...indexed.sequence,
              evidence: "the run index covers sequences up to \(indexed.sequence) but the log ends at \(end)",
              setAside: moved))
        } else if let position = result.losses.firstIndex(where: { $0.missing.lowerBound == end + 1 }) {
          result.losses[position].setAside += moved
        }
      }
    }
    guard !result.losses.isEmpty else { return result }
    let queue = try RunQueue(
      directory: directory, options: .dataDirectory, clock: clock, fileSystem: fileSystem)
    defer { queue.close() }
    for loss in result.losses {
      result.noteSequences.append(
        try queue.recordNote(
          .logLossAccepted(
            .with {
              $0.firstMissing = loss.missing.lowerBound
              $0.lastMissing = loss.missing.upperBound
              $0.acceptedBy = acceptedBy
              $0.evidence = loss.evidence
              $0.setAside = loss.setAside
            })))
    }
    return result
  }
}
