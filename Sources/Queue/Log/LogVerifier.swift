/// The outcome of ``LogVerifier/verify()``.
public struct VerifyReport: Sendable {
  public var segments = 0
  public var batches = 0
  public var records: UInt64 = 0
  public var bytes = 0
  /// The first problem found, or nil when every check held.
  public var problem: String?

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

  public func verify() throws(QueueError) -> VerifyReport {
    var report = VerifyReport()
    let names = try EventLog.segmentNames(in: logDirectory, fileSystem: fileSystem)
    var expected: UInt64 = 1
    var previousHash = LogFormat.zeroHash
    var previousBatch: String?
    for name in names {
      report.segments += 1
      let scan = SegmentScan(name: name, bytes: try fileSystem.read(logDirectory + "/" + name, from: 0))
      report.bytes += scan.bytes.count
      func fail(_ offset: Int, _ what: String) -> VerifyReport {
        var failed = report
        failed.problem = "segment \(name), byte offset \(offset), sequence \(expected): \(what)"
        return failed
      }
      switch scan.header {
      case .failure(let problem): return fail(0, "\(problem)")
      case .success(let first) where first != expected:
        return fail(
          0, "the segment starts at sequence \(first), expected \(expected): a segment was removed, added or renamed")
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
        if header.previousHash != previousHash {
          let culprit = previousBatch.map { "the previous batch (\($0)) was edited" } ?? "the first batch was edited"
          return fail(
            batch.offset, "the hash chain breaks: this batch does not match the hash of its predecessor; \(culprit)")
        }
        let decoded = scan.records(of: batch)
        if case .failure(let problem) = decoded { return fail(batch.offset, "\(problem)") }
        previousHash = scan.hash(of: batch)
        previousBatch = "\(name) offset \(batch.offset), sequences \(header.baseSequence)–\(header.lastSequence)"
        expected = header.lastSequence + 1
        report.batches += 1
        report.records += UInt64(header.count)
      }
      if let stop = scan.stop {
        return fail(stop.offset, "\(stop.problem)")
      }
    }
    return report
  }
}
