/// The outcome of ``LogVerifier/verify()``.
public struct VerifyReport: Sendable {
  public var segments = 0
  public var batches = 0
  public var records: UInt64 = 0
  public var bytes = 0
  /// Where the verified log begins: 1, or the anchor left by an accepted loss of its first segments.
  public var anchor: LogAnchor?
  /// The last sequence verified: the log may grow meanwhile (a live server), and everything up to
  /// here held.
  public var lastSequence: UInt64 = 0
  /// An unfinished append at the end of the last segment, not counted: being written by a live
  /// server, or interrupted (the next open cuts it off).
  public var unfinishedTail: String?
  /// The first problem found, or nil when every check held.
  public var problem: String?

  /// When the problem is that sequences are gone (a segment file deleted or cut), which ones.
  public var missing: ClosedRange<UInt64>?

  public var isIntact: Bool { problem == nil }
}

/// Checks the whole log: segment headers, every batch's length and checksum, that every body
/// decodes, sequence continuity, and the SHA-256 hash chain, so an edited, deleted, inserted or
/// reordered batch is found even when its checksum was recomputed.
public struct LogVerifier: Sendable {
  let logDirectory: String
  let fileSystem: any FileSystem

  public init(directory: String, fileSystem: any FileSystem = PosixFileSystem()) {
    logDirectory = directory + "/log"
    self.fileSystem = fileSystem
  }

  /// - Parameter thorough: also decode every body and check the hash chain; without it only
  ///   headers, lengths, checksums and sequence continuity are checked (a quick look for damage).
  public func verify(thorough: Bool = true) throws(QueueError) -> VerifyReport {
    var report = VerifyReport()
    // Snapshots first: one listed now was written after its batch was durable, so a log that ends
    // before it (read next) has lost what it covers. The quick look leaves them out: whoever
    // loads a snapshot next (``SnapshotStore/loadNewest(matching:lastBatch:)``) checks the same,
    // and decoding one costs as much as the look itself.
    let snapshots =
      thorough
      ? try SnapshotStore(directory: directoryName(logDirectory), fileSystem: fileSystem).intactSnapshots() : []
    let names = try EventLog.segmentNames(in: logDirectory, fileSystem: fileSystem)
    report.anchor = try LogAnchor.read(logDirectory: logDirectory, fileSystem: fileSystem)
    var expected: UInt64 = report.anchor?.firstSequence ?? 1
    var previousHash = report.anchor?.previousHashBytes ?? LogFormat.zeroHash
    var previousBatch: String?
    for name in names {
      report.segments += 1
      let scan = SegmentScan(name: name, bytes: try fileSystem.read(logDirectory + "/" + name, from: 0))
      report.bytes += scan.bytes.count
      func fail(_ offset: Int, _ what: String) -> VerifyReport {
        var failed = report
        failed.lastSequence = expected - 1
        failed.problem = "segment \(name), byte offset \(offset), sequence \(expected): \(what)"
        return failed
      }
      switch scan.header {
      case .failure where name == names.last && scan.bytes.count < LogFormat.segmentHeaderSize:
        report.unfinishedTail = "segment \(name), being created"
        report.segments -= 1
        continue
      case .failure(let problem): return fail(0, "\(problem)")
      case .success(let first) where first != expected:
        var failed = fail(
          0, "the segment starts at sequence \(first), expected \(expected): a segment was removed, added or renamed")
        if first > expected { failed.missing = expected...(first - 1) }
        return failed
      case .success: break
      }
      for batch in scan.batches {
        let header = batch.header
        if header.baseSequence > expected {
          return fail(
            batch.offset,
            "sequences \(expected)–\(header.baseSequence - 1) are missing: a batch was deleted here, or batches were reordered"
          )
        }
        if header.baseSequence < expected {
          return fail(
            batch.offset,
            "the batch starts at sequence \(header.baseSequence), which came before: a batch was inserted here, or batches were reordered"
          )
        }
        if thorough, header.previousHash != previousHash {
          let culprit = previousBatch.map { "the previous batch (\($0)) was edited" } ?? "the first batch was edited"
          return fail(
            batch.offset, "the hash chain breaks: this batch does not match the hash of its predecessor; \(culprit)")
        }
        if thorough {
          let decoded = scan.records(of: batch)
          if case .failure(let problem) = decoded { return fail(batch.offset, "\(problem)") }
          previousHash = scan.hash(of: batch)
        }
        previousBatch = "\(name) offset \(batch.offset), sequences \(header.baseSequence)–\(header.lastSequence)"
        expected = header.lastSequence + 1
        report.batches += 1
        report.records += UInt64(header.count)
      }
      if let stop = scan.stop {
        // The end of the last segment may be an append in progress beside a live server: the
        // verified prefix ends before it.
        if name == names.last, scan.stopIsTornTail {
          report.unfinishedTail = "segment \(name) from byte \(stop.offset)"
          break
        }
        return fail(stop.offset, "\(stop.problem)")
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
