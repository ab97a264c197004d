import Foundation
package import GPSModel
import SwiftProtobuf
import Synchronization

/// Which sealed segments ``RunQueue/archive(before:delete:archivedBy:reason:dryRun:)`` takes.
package enum ArchiveBound: Sendable, Hashable, CustomStringConvertible {
  /// Segments whose every event is older than this.
  case time(Timestamp)
  /// Segments whose every event has a sequence below this.
  case sequence(UInt64)

  package var description: String {
    switch self {
    case .time(let time): "before \(time)"
    case .sequence(let sequence): "before sequence \(sequence)"
    }
  }
}

/// What an archive moved (or would move, for a dry run).
package struct ArchiveReport: Sendable, Hashable {
  /// The segment files, oldest first.
  package var segments: [String] = []
  /// The sequences they held; nil when there was nothing to archive.
  package var archived: ClosedRange<UInt64>?
  package var bytes: UInt64 = 0
  /// Where the retained log begins now.
  package var logStart: UInt64
  /// The sequence of the `LogSegmentsArchived` note; nil for a dry run or when nothing moved.
  package var noteSequence: UInt64?
  package var deleted = false
  /// Why the next sealed segment stayed, when one did.
  package var stoppedBecause: String?
  /// The run not finished yet whose events kept the next sealed segment, when one did.
  package var heldBy: RunID?
}

extension RunQueue {
  /// Moves the sealed segments wholly `before` the bound to `DATA/archive/` (or deletes them), once
  /// the run index (or, without one, a snapshot) covers them: the runs they held stay queryable,
  /// and their events readable again whenever the files are in `DATA/archive/`.
  ///
  /// In this order, so that a crash at any point leaves a log that opens, verifies and answers the
  /// same: a `LogSegmentsArchived` note (durable, in the hash chain), the new anchor
  /// (`log/ANCHOR`, written atomically), then one `rename` per segment. Opening the log finishes an
  /// archive whose anchor was written; a segment is never in both folders. The live segment is
  /// never archived, nor one the index still needs, nor one holding events of a run not finished
  /// yet.
  package func archive(
    before bound: ArchiveBound, delete: Bool = false, archivedBy: String, reason: String? = nil,
    dryRun: Bool = false
  ) throws(QueueError) -> ArchiveReport {
    try archiving.withLock { _ throws(QueueError) -> ArchiveReport in
      // An archive interrupted after its note finishes first: never a second note for it.
      try finishInterruptedArchive()
      let logDirectory = log.logDirectory
      let reader = LogReader(directory: directory, fileSystem: fileSystem)
      let anchor = try LogAnchor.read(logDirectory: logDirectory, fileSystem: fileSystem)
      var report = ArchiveReport(logStart: anchor?.firstSequence ?? 1, deleted: delete)
      let names = try EventLog.segmentNames(in: logDirectory, fileSystem: fileSystem)
      let covered = try coveredSequence()
      let store = archiveStore
      if store != nil, !dryRun, let refusal = standbyRefusal { throw refusal }
      // On a store, what a live standby has not copied yet stays.
      let standbysHave = try store?.archiveLimit()
      // The oldest run not finished yet: its events stay in the retained log (as Temporal keeps
      // the history of open workflows), so its whole history reads and verifies from the log.
      let oldestActive = withState { state in state.runs.values.first { !$0.state.isTerminal } }
      var chosen: [(name: String, end: UInt64)] = []
      for (position, name) in names.enumerated().dropLast() {
        let next = names[position + 1]
        let end = LogFormat.firstSequence(ofSegmentNamed: next)! - 1
        guard end <= covered else {
          report.stoppedBecause =
            options.runIndex == nil
            ? "no snapshot covers segment \(name) yet (the newest ends at sequence \(covered))"
            : "the run index covers the log only up to sequence \(covered), and segment \(name) ends at \(end)"
          break
        }
        if let standbysHave, end > standbysHave {
          report.stoppedBecause =
            "a standby has copied the store's log only up to sequence \(standbysHave), and segment \(name) ends at \(end)"
          break
        }
        if let oldestActive, oldestActive.firstSequence <= end {
          report.stoppedBecause =
            "segment \(name) holds events of run \(oldestActive.id), still \(oldestActive.state) (enqueued at sequence \(oldestActive.firstSequence)); the log keeps every event of a run until it finishes"
          report.heldBy = oldestActive.id
          break
        }
        switch bound {
        case .sequence(let sequence):
          guard end < sequence else {
            report.stoppedBecause = "segment \(name) holds sequences up to \(end), not all before \(sequence)"
            break
          }
        case .time(let time):
          // Times never decrease along the log: the next segment's first event bounds this one's last.
          let nextTime = try firstEventTime(in: reader, at: end + 1)
          guard nextTime < time else {
            report.stoppedBecause = "segment \(name) holds events up to \(nextTime) or later, not all before \(time)"
            break
          }
        }
        if report.stoppedBecause != nil { break }
        chosen.append((name, end))
      }
      if chosen.isEmpty, report.stoppedBecause == nil {
        report.stoppedBecause = "the log has only its live segment, \(names.last ?? "none"), which is never archived"
      }
      guard let last = chosen.last, let firstName = chosen.first?.name else { return report }
      for (name, _) in chosen {
        report.bytes += try fileSystem.size(of: logDirectory + "/" + name) ?? 0
      }
      report.segments = chosen.map(\.name)
      report.archived = LogFormat.firstSequence(ofSegmentNamed: firstName)!...last.end
      guard !dryRun else { return report }

      let scan = SegmentScan(name: last.name, bytes: try fileSystem.read(logDirectory + "/" + last.name, from: 0))
      guard let lastBatch = scan.batches.last, lastBatch.header.lastSequence == last.end, scan.stop == nil else {
        throw EventLog.corruption(
          segment: last.name, offset: scan.endOfBatches, sequence: last.end,
          problem: "the sealed segment does not end at sequence \(last.end), where the next one begins")
      }
      let lastHash = scan.hash(of: lastBatch)
      let now = clock.now()
      let note = Gps_V1_LogSegmentsArchived.with {
        $0.firstArchived = report.archived!.lowerBound
        $0.lastArchived = last.end
        $0.lastHash = Data(lastHash)
        $0.segments = report.segments
        $0.deleted = delete
        $0.archivedBy = archivedBy
        $0.reason = reason ?? bound.description
      }
      // The intent first: a crash after the note and before the anchor leaves the note durable
      // and the segments in log/; the next open (or archive) reads the intent and finishes. On a
      // store the intent is there, for whichever server leads next.
      let intent = ArchiveIntent(noteAfter: log.lastSequence, note: note)
      if let store {
        try store.recordArchiveIntent(intent)
      } else {
        try intent.write(logDirectory: logDirectory, fileSystem: fileSystem)
      }
      report.noteSequence = try recordNote(.logSegmentsArchived(note))
      if let store {
        let start = try commitArchive(note, noteSequence: report.noteSequence!, at: now, to: store)
        report.logStart = start
        return report
      }
      let newAnchor = Self.anchor(after: note, noteSequence: report.noteSequence!, at: now, previous: anchor)
      do throws(QueueError) {
        try newAnchor.write(logDirectory: logDirectory, fileSystem: fileSystem)
      } catch {
        throw QueueError(
          code: error.code,
          message:
            "archiving stopped after its note (event \(report.noteSequence!)) was recorded (\(error.message)): the next open or archive finishes it; nothing is lost",
          cause: error)
      }
      do throws(QueueError) {
        try moveArchived(before: newAnchor, names: names, as: note)
      } catch {
        retainedStart.withLock { $0 = newAnchor.firstSequence }
        throw QueueError(
          code: error.code,
          message:
            "archiving stopped part-way (\(error.message)): the log's anchor already says it begins at sequence \(newAnchor.firstSequence) (event \(report.noteSequence!) records it), and the segments not yet moved move to archive/ at the next open or archive; nothing is lost",
          cause: error)
      }
      report.logStart = newAnchor.firstSequence
      retainedStart.withLock { $0 = newAnchor.firstSequence }
      return report
    }
  }

  /// The first sequence of the retained log: a run whose first event is before it is archived.
  package var logStart: UInt64 { retainedStart.withLock { $0 } }

  /// The anchor an archive's `note` (recorded at `noteSequence`) leaves, after `previous`.
  static func anchor(
    after note: Gps_V1_LogSegmentsArchived, noteSequence: UInt64, at time: Timestamp, previous anchor: LogAnchor?
  ) -> LogAnchor {
    let previous = anchor?.archive
    return LogAnchor(
      firstSequence: note.lastArchived + 1, previousHash: note.lastHash, acceptedBy: anchor?.acceptedBy,
      acceptedAt: anchor?.acceptedAt,
      archive: LogAnchor.Archive(
        firstSequence: previous?.firstSequence ?? anchor?.firstSequence ?? 1,
        previousHash: previous?.previousHash ?? anchor?.previousHash ?? Data(LogFormat.zeroHash),
        archivedBy: note.archivedBy, archivedAt: time.description, noteSequence: noteSequence))
  }

  /// Finishes an archive that stopped between its note and its anchor (a kill, a full disk): the
  /// intent says which note; when the log holds it, the anchor is written and the segments
  /// moved (or deleted) as the note says. When it does not, nothing was archived. Returns the
  /// note's sequence when it finished one.
  @discardableResult
  func finishInterruptedArchive() throws(QueueError) -> UInt64? {
    let logDirectory = log.logDirectory
    if let store = archiveStore {
      // On a store, the intent is cleared in the transaction that commits the archive.
      guard standbyRefusal == nil, let intent = try store.archiveIntent() else { return nil }
      guard let found = try findNote(of: intent) else {
        try store.recordArchiveIntent(nil)
        return nil
      }
      _ = try commitArchive(intent.note, noteSequence: found.sequence, at: found.time, to: store)
      return found.sequence
    }
    guard let intent = try ArchiveIntent.read(logDirectory: logDirectory, fileSystem: fileSystem) else { return nil }
    let anchor = try LogAnchor.read(logDirectory: logDirectory, fileSystem: fileSystem)
    if let anchor, anchor.firstSequence > intent.note.lastArchived {
      // The anchor was written: opening the log moved what was left.
      try ArchiveIntent.remove(logDirectory: logDirectory, fileSystem: fileSystem)
      return nil
    }
    guard let found = try findNote(of: intent) else {
      // The note never became durable: the archive did not happen.
      try ArchiveIntent.remove(logDirectory: logDirectory, fileSystem: fileSystem)
      return nil
    }
    let newAnchor = Self.anchor(after: intent.note, noteSequence: found.sequence, at: found.time, previous: anchor)
    try newAnchor.write(logDirectory: logDirectory, fileSystem: fileSystem)
    try moveArchived(
      before: newAnchor, names: try EventLog.segmentNames(in: logDirectory, fileSystem: fileSystem), as: intent.note)
    retainedStart.withLock { $0 = newAnchor.firstSequence }
    return found.sequence
  }

  /// The sequence and time of the intent's note in the log, or nil when it never became durable.
  private func findNote(of intent: ArchiveIntent) throws(QueueError) -> (sequence: UInt64, time: Timestamp)? {
    var found: (sequence: UInt64, time: Timestamp)?
    var cursor = LogCursor(from: intent.noteAfter + 1)
    do {
      try LogReader(directory: directory, fileSystem: fileSystem).read(&cursor, window: 1 << 20) { record in
        let event = try RunEvent(record)
        if case .logSegmentsArchived(let note) = event.kind, note == intent.note {
          found = (record.sequence, event.time)
          return false
        }
        return true
      }
    } catch let error as QueueError {
      throw error
    } catch {
      throw QueueError(code: .io, message: "reading the log failed: \(error)", cause: error)
    }
    return found
  }

  /// The last steps of an archive, once its anchor is written: the segments before it move to
  /// `archive/` (or are deleted, as `note` says), and the intent goes. Shared by an archive and the
  /// finish of an interrupted one.
  private func moveArchived(before anchor: LogAnchor, names: [String], as note: Gps_V1_LogSegmentsArchived)
    throws(QueueError)
  {
    let logDirectory = log.logDirectory
    try EventLog.finishArchiving(
      before: anchor.firstSequence, names: names, logDirectory: logDirectory, fileSystem: fileSystem)
    if note.deleted {
      let archive = LogReader(directory: directory, fileSystem: fileSystem).archiveDirectory
      for name in note.segments where try fileSystem.size(of: archive + "/" + name) != nil {
        try fileSystem.remove(archive + "/" + name)
      }
      try fileSystem.syncDirectory(archive)
    }
    try ArchiveIntent.remove(logDirectory: logDirectory, fileSystem: fileSystem)
  }

  /// How far the derived state on disk reaches: the run index's checkpoint, or the newest snapshot.
  func coveredSequence() throws(QueueError) -> UInt64 {
    if let indexer { return try indexer.makeDurable() }
    return try snapshots.intactSnapshots().map(\.snapshot.lastSequence).max() ?? 0
  }

  /// The time of the event at `sequence`.
  func firstEventTime(in reader: LogReader, at sequence: UInt64) throws(QueueError) -> Timestamp {
    var cursor = LogCursor(from: sequence)
    var time: Timestamp?
    do {
      try reader.read(&cursor, window: 64 * 1024) { record in
        time = try RunEvent(record).time
        return false
      }
    } catch let error as QueueError {
      throw error
    } catch {
      throw QueueError(code: .corrupt, message: "event \(sequence) does not decode: \(error)", cause: error)
    }
    guard let time else {
      throw QueueError(code: .corrupt, message: "the log has no event \(sequence), where a segment begins")
    }
    return time
  }
}

/// What an archive is about to record (`log/ARCHIVING`), written before its note: the note, and
/// the last durable sequence before it (the note is found after it).
package struct ArchiveIntent: Sendable, Equatable {
  static let name = "ARCHIVING"
  package var noteAfter: UInt64
  package var note: Gps_V1_LogSegmentsArchived

  package init(noteAfter: UInt64, note: Gps_V1_LogSegmentsArchived) {
    self.noteAfter = noteAfter
    self.note = note
  }

  /// The intent as stored: the sequence, then the note's protobuf bytes.
  package var encoded: [UInt8] {
    var bytes: [UInt8] = []
    bytes.appendLittleEndian(noteAfter)
    bytes += (try? note.serializedBytes() as [UInt8]) ?? []
    return bytes
  }

  /// The intent `encoded` holds, or nil when it does not decode.
  package init?(encoded bytes: [UInt8]) {
    guard bytes.count >= 8, let note = try? Gps_V1_LogSegmentsArchived(serializedBytes: Array(bytes[8...])) else {
      return nil
    }
    noteAfter = bytes.withUnsafeBytes { $0.loadLittleEndian(UInt64.self, at: 0) }
    self.note = note
  }

  func write(logDirectory: String, fileSystem: any FileSystem) throws(QueueError) {
    try fileSystem.writeAtomically(logDirectory + "/" + Self.name, contents: encoded)
  }

  /// The intent, or nil when there is none (or one that does not decode: written whole or not at all).
  static func read(logDirectory: String, fileSystem: any FileSystem) throws(QueueError) -> ArchiveIntent? {
    let path = logDirectory + "/" + name
    guard try fileSystem.size(of: path) != nil else { return nil }
    return ArchiveIntent(encoded: try fileSystem.read(path, from: 0))
  }

  static func remove(logDirectory: String, fileSystem: any FileSystem) throws(QueueError) {
    let path = logDirectory + "/" + name
    guard try fileSystem.size(of: path) != nil else { return }
    try fileSystem.remove(path)
    try fileSystem.syncDirectory(logDirectory)
  }
}
