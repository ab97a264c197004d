package import GPSModel

/// The outcome of ``LogVerifier/verify()``.
package struct VerifyReport: Sendable {
  package var segments = 0
  package var batches = 0
  package var records: UInt64 = 0
  package var bytes = 0
  /// Where the verified log begins: 1, or the anchor left by an accepted loss of its first segments.
  package var anchor: LogAnchor?
  /// The last sequence verified: the log may grow meanwhile (a live server), and everything up to
  /// here held.
  package var lastSequence: UInt64 = 0
  /// An unfinished append at the end of the last segment, not counted: being written by a live
  /// server, or interrupted (the next open cuts it off).
  package var unfinishedTail: String?
  /// The first problem found, or nil when every check held.
  package var problem: String?

  /// When the problem is that sequences are gone (a segment file deleted or cut), which ones.
  package var missing: ClosedRange<UInt64>?

  /// The archived head of the log (`DATA/archive/`), when segments were archived.
  package var archive: Archive?

  package struct Archive: Sendable {
    /// The sequences the anchor says were archived.
    package var sequences: ClosedRange<UInt64>
    /// Archived segment files present in `DATA/archive/` (none: deleted or moved elsewhere, and not verified).
    package var segmentsPresent: Int
    package var batches = 0
    package var records: UInt64 = 0
    package var bytes = 0
    /// Archived sequences whose segments are not in `DATA/archive/` (deleted, or kept elsewhere).
    package var absent: [ClosedRange<UInt64>] = []
    /// The sequence of the `LogSegmentsArchived` note in the verified log that vouches for the anchor.
    package var confirmedBy: UInt64?
    /// What is wrong with the archived segments, if anything.
    package var problem: String?
  }

  package var isIntact: Bool { problem == nil }
}

/// Walking segments in order: continuity, checksums, bodies and the hash chain.
private struct Walk {
  var expected: UInt64
  /// Nil after a gap in the archive: the next batch's predecessor is not here to check it against.
  var previousHash: [UInt8]?
  var previousBatch: String?
  /// Archived sequences not in `DATA/archive/` (deleted, or moved elsewhere).
  var absent: [ClosedRange<UInt64>] = []
  var segments = 0
  var batches = 0
  var records: UInt64 = 0
  var bytes = 0
  var unfinishedTail: String?
  var missing: ClosedRange<UInt64>?
  var problem: String?

  init(expected: UInt64, previousHash: [UInt8]) {
    self.expected = expected
    self.previousHash = previousHash
  }

  /// Stops at the first problem (in ``problem``). `live`: the last segment may be being appended.
  mutating func segments(
    _ names: [String], in directory: String, live: Bool, thorough: Bool, fileSystem: any FileSystem
  ) throws(QueueError) {
    // The archive may lack segments that were deleted: what it has is verified around the gaps.
    let gapsAllowed = !live
    for name in names {
      segments += 1
      let scan = SegmentScan(name: name, bytes: try fileSystem.read(directory + "/" + name, from: 0))
      bytes += scan.bytes.count
      func fail(_ offset: Int, _ what: String) {
        problem = "segment \(name), byte offset \(offset), sequence \(expected): \(what)"
      }
      switch scan.header {
      case .failure where live && name == names.last && scan.bytes.count < LogFormat.segmentHeaderSize:
        unfinishedTail = "segment \(name), being created"
        segments -= 1
        continue
      case .failure(let problem):
        fail(0, "\(problem)")
        return
      case .success(let first) where gapsAllowed && first > expected:
        absent.append(expected...(first - 1))
        expected = first
        previousHash = nil
        previousBatch = nil
      case .success(let first) where first != expected:
        fail(
          0, "the segment starts at sequence \(first), expected \(expected): a segment was removed, added or renamed")
        if first > expected { missing = expected...(first - 1) }
        return
      case .success: break
      }
      for batch in scan.batches {
        let header = batch.header
        if header.baseSequence > expected {
          fail(
            batch.offset,
            "sequences \(expected)–\(header.baseSequence - 1) are missing: a batch was deleted here, or batches were reordered"
          )
          return
        }
        if header.baseSequence < expected {
          fail(
            batch.offset,
            "the batch starts at sequence \(header.baseSequence), which came before: a batch was inserted here, or batches were reordered"
          )
          return
        }
        if thorough, let previousHash, header.previousHash != previousHash {
          let culprit = previousBatch.map { "the previous batch (\($0)) was edited" } ?? "the first batch was edited"
          fail(batch.offset, "the hash chain breaks: this batch does not match the hash of its predecessor; \(culprit)")
          return
        }
        if thorough {
          if case .failure(let problem) = scan.records(of: batch) {
            fail(batch.offset, "\(problem)")
            return
          }
          previousHash = scan.hash(of: batch)
        }
        previousBatch = "\(name) offset \(batch.offset), sequences \(header.baseSequence)–\(header.lastSequence)"
        expected = header.lastSequence &+ 1
        batches += 1
        records += UInt64(header.count)
      }
      if let stop = scan.stop {
        // The end of the last segment may be an append in progress beside a live server: the
        // verified prefix ends before it.
        if live, name == names.last, scan.stopIsTornTail {
          unfinishedTail = "segment \(name) from byte \(stop.offset)"
          break
        }
        fail(stop.offset, "\(stop.problem)")
        return
      }
    }
  }
}

/// Checks the whole log: segment headers, every batch's length and checksum, that every body
/// decodes, sequence continuity, and the SHA-256 hash chain, so an edited, deleted, inserted or
/// reordered batch is found even when its checksum was recomputed.
package struct LogVerifier: Sendable {
  let logDirectory: String
  let fileSystem: any FileSystem

  package init(directory: String, fileSystem: any FileSystem = PosixFileSystem()) {
    logDirectory = directory + "/log"
    self.fileSystem = fileSystem
  }

  /// - Parameter thorough: also decode every body and check the hash chain; without it only
  ///   headers, lengths, checksums and sequence continuity are checked (a quick look for damage).
  package func verify(thorough: Bool = true) throws(QueueError) -> VerifyReport {
    // An archive beside a live server moves segments while this reads: when the anchor changed
    // meanwhile, what was read is of two logs, and it is read again.
    var attempt = 0
    while true {
      let anchor = try LogAnchor.read(logDirectory: logDirectory, fileSystem: fileSystem)
      let outcome = Result { () throws(QueueError) in try verifyOnce(thorough: thorough) }
      attempt += 1
      guard attempt < 5, try LogAnchor.read(logDirectory: logDirectory, fileSystem: fileSystem) != anchor else {
        return try outcome.get()
      }
    }
  }

  func verifyOnce(thorough: Bool) throws(QueueError) -> VerifyReport {
    var report = VerifyReport()
    // Snapshots first: one listed now was written after its batch was durable, so a log that ends
    // before it (read next) has lost what it covers. The quick look leaves them out: whoever
    // loads a snapshot next (``SnapshotStore/loadNewest(matching:lastBatch:)``) checks the same,
    // and decoding one costs as much as the look itself.
    let snapshots =
      thorough
      ? try SnapshotStore(directory: directoryName(logDirectory), fileSystem: fileSystem).intactSnapshots() : []
    report.anchor = try LogAnchor.read(logDirectory: logDirectory, fileSystem: fileSystem)
    var names = try EventLog.segmentNames(in: logDirectory, fileSystem: fileSystem)
    if let anchor = report.anchor, anchor.archive != nil {
      // Segments before the anchor still in log/ are being archived (or will be at the next open).
      names.removeAll { LogFormat.firstSequence(ofSegmentNamed: $0)! < anchor.firstSequence }
    }
    if let archive = report.anchor?.archive {
      // The archive's own chain, from where it began to the batch the anchor names.
      let archiveDirectory = directoryName(logDirectory) + "/archive"
      let logFirst = report.anchor!.firstSequence
      let archived =
        try fileSystem.size(of: archiveDirectory) == nil
        ? []
        : try EventLog.segmentNames(in: archiveDirectory, fileSystem: fileSystem).filter {
          LogFormat.firstSequence(ofSegmentNamed: $0)! < logFirst
        }
      var walk = Walk(expected: archive.firstSequence, previousHash: archive.previousHashBytes)
      let start = report.anchor!.firstSequence
      var archiveReport = VerifyReport.Archive(
        sequences: archive.firstSequence...(start - 1), segmentsPresent: archived.count)
      if !archived.isEmpty {
        try walk.segments(archived, in: archiveDirectory, live: false, thorough: thorough, fileSystem: fileSystem)
        if walk.problem == nil, walk.expected > start {
          walk.problem = "the archive holds sequences up to \(walk.expected - 1), past the log's start at \(start)"
        }
        if walk.problem == nil, walk.expected < start { walk.absent.append(walk.expected...(start - 1)) }
        if walk.problem == nil, thorough, walk.expected == start, let hash = walk.previousHash,
          hash != report.anchor!.previousHashBytes
        {
          walk.problem =
            "the hash chain breaks between the archive and the log: the last archived batch does not match the log's anchor"
        }
        archiveReport.absent = walk.absent
        archiveReport.problem = walk.problem
        archiveReport.batches = walk.batches
        archiveReport.records = walk.records
        archiveReport.bytes = walk.bytes
      }
      if archived.isEmpty { archiveReport.absent = [archiveReport.sequences] }
      report.archive = archiveReport
      if let problem = walk.problem {
        report.problem = "in DATA/archive/: \(problem)"
        return report
      }
    }
    var walk = Walk(
      expected: report.anchor?.firstSequence ?? 1, previousHash: report.anchor?.previousHashBytes ?? LogFormat.zeroHash)
    try walk.segments(names, in: logDirectory, live: true, thorough: thorough, fileSystem: fileSystem)
    report.segments = walk.segments
    report.batches = walk.batches
    report.records = walk.records
    report.bytes = walk.bytes
    report.unfinishedTail = walk.unfinishedTail
    report.missing = walk.missing
    let expected = walk.expected
    if let problem = walk.problem {
      report.problem = problem
      report.lastSequence = expected - 1
      return report
    }
    if thorough, let anchor = report.anchor, let archive = anchor.archive {
      // The anchor is a file beside the log; the note archiving wrote is in the verified chain.
      report.archive?.confirmedBy = archive.noteSequence
      if let note = archive.noteSequence {
        let reader = LogReader(directory: directoryName(logDirectory), fileSystem: fileSystem)
        var cursor = LogCursor(from: note)
        var found: RunEvent?
        try? reader.read(&cursor, window: 64 * 1024) { record in
          found = record.sequence == note ? try? RunEvent(record) : nil
          return false
        }
        guard case .logSegmentsArchived(let archived) = found?.kind, archived.lastArchived == anchor.firstSequence - 1,
          Array(archived.lastHash) == anchor.previousHashBytes
        else {
          report.problem =
            "the log's anchor (log/ANCHOR) says sequences up to \(anchor.firstSequence - 1) were archived, but event \(note) of the log is not the note that archive wrote: the anchor was edited"
          report.lastSequence = expected - 1
          return report
        }
      }
    }
    if let (name, snapshot) = snapshots.first, snapshot.lastSequence >= expected {
      let loss = SnapshotStore.loss(snapshot: name, covering: snapshot.lastSequence, logEnd: expected - 1)
      report.missing = loss.missing
      report.problem = loss.message
    }
    report.lastSequence = expected - 1
    return report
  }
}
