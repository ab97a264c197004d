/// One record of the log.
public struct LogRecord: Sendable, Hashable {
  public var sequence: UInt64
  public var payload: [UInt8]
}

/// Reads the log without the lock, possibly while a writer (in this or another process) appends.
///
/// A batch still being written at the end of the last segment is not visible: reading stops before
/// it. Damage anywhere else throws ``QueueError`` with segment, offset and sequence.
public struct LogReader: Sendable {
  public let logDirectory: String
  let fileSystem: any FileSystem

  /// - Parameter directory: the data directory (the log is in its `log` folder).
  public init(directory: String, fileSystem: any FileSystem = PosixFileSystem()) {
    logDirectory = directory + "/log"
    self.fileSystem = fileSystem
  }

  /// Calls `body` with every record from `sequence` on, in order; returns the next sequence to read
  /// (one past the last record seen), which a later call can pass to continue.
  @discardableResult
  public func read(from sequence: UInt64 = 1, _ body: (LogRecord) throws -> Void) throws -> UInt64 {
    let names = try EventLog.segmentNames(in: logDirectory, fileSystem: fileSystem)
    // Start in the last segment whose first sequence is at or before `sequence`.
    let start = names.lastIndex { LogFormat.firstSequence(ofSegmentNamed: $0)! <= sequence } ?? 0
    var next = sequence
    for name in names[start...] {
      let scan = SegmentScan(name: name, bytes: try fileSystem.read(logDirectory + "/" + name, from: 0))
      if case .failure(let problem) = scan.header {
        if name == names.last { break }  // being created right now
        throw EventLog.corruption(segment: name, offset: 0, sequence: next, problem: "\(problem)")
      }
      for batch in scan.batches where batch.header.lastSequence >= next || batch.header.count == 0 {
        let records = try scan.bytes.withUnsafeBytes { bytes throws(QueueError) in
          switch LogFormat.decodeRecords(bytes, at: batch.offset, header: batch.header) {
          case .success(let records): return records
          case .failure(let problem):
            throw EventLog.corruption(
              segment: name, offset: batch.offset, sequence: batch.header.baseSequence, problem: "\(problem)")
          }
        }
        for (index, payload) in records.enumerated() {
          let recordSequence = batch.header.baseSequence + UInt64(index)
          guard recordSequence >= next else { continue }
          try body(LogRecord(sequence: recordSequence, payload: payload))
          next = recordSequence + 1
        }
      }
      if let stop = scan.stop, name != names.last || !scan.stopIsTornTail {
        throw EventLog.corruption(segment: name, offset: stop.offset, sequence: next, problem: "\(stop.problem)")
      }
    }
    return next
  }
}
