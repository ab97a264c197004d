package import GPSModel

/// One record of the log.
package struct LogRecord: Sendable, Hashable {
  package var sequence: UInt64
  package var payload: [UInt8]

  package init(sequence: UInt64, payload: [UInt8]) {
    self.sequence = sequence
    self.payload = payload
  }
}

/// Where a reader continues: the next sequence, and the segment and frame offset where it is.
package struct LogCursor: Sendable, Hashable {
  package var nextSequence: UInt64
  var segment: String?
  var offset = 0

  package init(from sequence: UInt64 = 1) {
    nextSequence = sequence
  }
}

/// Reads the log without the lock, possibly while a writer (in this or another process) appends.
///
/// A batch still being written at the end of the last segment is not visible: reading stops before
/// it. Damage anywhere else throws ``QueueError`` with segment, offset and sequence.
package struct LogReader: Sendable {
  package let logDirectory: String
  let fileSystem: any FileSystem

  /// - Parameter directory: the data directory (the log is in its `log` folder).
  package init(directory: String, fileSystem: any FileSystem = PosixFileSystem()) {
    logDirectory = directory + "/log"
    self.fileSystem = fileSystem
  }

  /// Calls `body` with every record from `sequence` on, in order; returns the next sequence
  /// (one past the last record seen).
  @discardableResult
  package func read(from sequence: UInt64 = 1, _ body: (LogRecord) throws -> Void) throws -> UInt64 {
    var cursor = LogCursor(from: sequence)
    try read(&cursor, body)
    return cursor.nextSequence
  }

  /// Reads every complete record after `cursor` and advances it; a later call reads only what was
  /// appended since, without reading earlier bytes again.
  package func read(_ cursor: inout LogCursor, _ body: (LogRecord) throws -> Void) throws {
    try read(&cursor, window: .max) { record in
      try body(record)
      return true
    }
  }

  /// Like ``read(_:_:)-(LogCursor,_)``, reading each segment `window` bytes at a time (more when one
  /// batch is larger) and stopping at the first record for which `body` returns false: the cursor
  /// stays at that record, which the next call reads again. A reader that wants a few records near
  /// the cursor reads only the bytes around them.
  package func read(_ cursor: inout LogCursor, window: Int, _ body: (LogRecord) throws -> Bool) throws {
    try read(&cursor, window: window, body, batchEnded: nil)
  }

  /// Like ``read(_:window:_:)``, calling `batchEnded` after the last record of each batch with its
  /// last sequence and a function that computes its hash; `batchEnded` returning false stops there
  /// (the cursor is past that batch).
  func read(
    _ cursor: inout LogCursor, window: Int, _ body: (LogRecord) throws -> Bool,
    batchEnded: ((UInt64, () -> [UInt8]) throws -> Bool)?
  ) throws {
    var segments = try self.segments(for: cursor)
    guard !segments.isEmpty else { return }
    if cursor.segment == nil || !segments.contains(where: { $0.name == cursor.segment }) {
      // Start in the last segment whose first sequence is at or before the cursor.
      let sequence = cursor.nextSequence
      cursor.segment = (segments.last { $0.first <= sequence } ?? segments[0]).name
      cursor.offset = 0
    }
    var index = segments.firstIndex { $0.name == cursor.segment }!
    var window = max(window, 4096)
    var relisted = false
    while true {
      let segment = segments[index]
      let name = segment.name
      let isLast = index == segments.count - 1
      let bytes: [UInt8]
      do {
        bytes = try fileSystem.read(segment.path, from: UInt64(cursor.offset), maxBytes: window)
      } catch {
        // Archived while this reader was on its way: it is in DATA/archive/ now.
        guard !relisted, try fileSystem.size(of: segment.path) == nil else { throw error }
        relisted = true
        segments = try self.segments(for: cursor, archive: true)
        guard let moved = segments.firstIndex(where: { $0.name == name }) else { throw error }
        index = moved
        continue
      }
      let scan = SegmentScan(name: name, bytes: bytes, fileOffset: cursor.offset)
      if case .failure(let problem) = scan.header {
        if isLast { return }  // being created right now
        throw EventLog.corruption(segment: name, offset: 0, sequence: cursor.nextSequence, problem: "\(problem)")
      }
      for batch in scan.batches where batch.header.lastSequence >= cursor.nextSequence {
        let records: [[UInt8]]
        switch scan.records(of: batch) {
        case .success(let decoded): records = decoded
        case .failure(let problem):
          throw EventLog.corruption(
            segment: name, offset: batch.offset, sequence: batch.header.baseSequence, problem: "\(problem)")
        }
        for (position, payload) in records.enumerated() {
          let sequence = batch.header.baseSequence &+ UInt64(position)
          guard sequence >= cursor.nextSequence else { continue }
          guard try body(LogRecord(sequence: sequence, payload: payload)) else {
            // Read again next time, from the start of its batch.
            cursor.offset = batch.offset
            return
          }
          cursor.nextSequence = sequence &+ 1
        }
        if let batchEnded, try !batchEnded(batch.header.lastSequence, { scan.hash(of: batch) }) {
          cursor.offset = batch.offset + batch.header.frameSize
          return
        }
      }
      cursor.offset = scan.endOfBatches
      if bytes.count == window {
        // The window ended before the file did: what looks torn at its end is the next window's.
        // A batch larger than the window is read with a larger one.
        if scan.batches.isEmpty { window *= 2 }
        continue
      }
      if let stop = scan.stop, !isLast || !scan.stopIsTornTail {
        throw EventLog.corruption(
          segment: name, offset: stop.offset, sequence: cursor.nextSequence, problem: "\(stop.problem)")
      }
      guard !isLast else { return }
      index += 1
      let next = segments[index]
      if next.first > cursor.nextSequence, let end = scan.batches.last?.header.lastSequence, next.first > end + 1 {
        throw Self.gap(after: end, next: next, archived: segment.archived)
      }
      cursor.segment = next.name
      cursor.offset = 0
    }
  }

  /// One segment file a reader reads.
  struct Segment {
    var name: String
    var path: String
    /// Its first sequence.
    var first: UInt64
    /// In `DATA/archive/`.
    var archived: Bool
  }

  /// The archive folder of the data directory.
  var archiveDirectory: String { directoryName(logDirectory) + "/archive" }

  /// The segments to read from `cursor` on: the log's, after the archived ones that hold earlier
  /// sequences when the cursor is before the log's first segment (or `archive` asks for them).
  func segments(for cursor: LogCursor, archive: Bool = false, checkingHead: Bool = true) throws(QueueError) -> [Segment]
  {
    let names = try EventLog.segmentNames(in: logDirectory, fileSystem: fileSystem)
    if cursor.segment == nil, checkingHead { try checkHead(names) }
    var segments = names.map {
      Segment(
        name: $0, path: logDirectory + "/" + $0, first: LogFormat.firstSequence(ofSegmentNamed: $0)!, archived: false)
    }
    let logFirst = segments.first?.first ?? .max
    guard archive || cursor.nextSequence < logFirst, try fileSystem.size(of: archiveDirectory) != nil else {
      return segments
    }
    let archived = try EventLog.segmentNames(in: archiveDirectory, fileSystem: fileSystem).compactMap {
      name -> Segment? in
      let first = LogFormat.firstSequence(ofSegmentNamed: name)!
      guard first < logFirst else { return nil }
      return Segment(name: name, path: archiveDirectory + "/" + name, first: first, archived: true)
    }
    segments.insert(contentsOf: archived, at: 0)
    return segments
  }

  /// The first sequence of the retained log: 1, or where its anchor says it begins (the
  /// sequences before were archived or lost).
  package func retainedStart() throws(QueueError) -> UInt64 {
    try LogAnchor.read(logDirectory: logDirectory, fileSystem: fileSystem)?.firstSequence ?? 1
  }

  /// True when every event from sequence 1 on can be read: the log is whole, or its archived head
  /// is in `DATA/archive/` and nothing before it was lost.
  package func readsFromStart() throws(QueueError) -> Bool {
    guard let anchor = try LogAnchor.read(logDirectory: logDirectory, fileSystem: fileSystem) else { return true }
    guard anchor.archive != nil, anchor.firstKept == 1 else { return false }
    return try segments(for: LogCursor(from: 1)).first?.first == 1
  }

  static func gap(after end: UInt64, next: Segment, archived: Bool) -> QueueError {
    let hint =
      archived
      ? "; they were archived: put their segment files back in DATA/archive/ to read them"
      : ": a segment file was deleted or moved"
    return QueueError(
      code: .dataLost,
      message: "sequences \(end + 1)–\(next.first - 1) are missing before segment \(next.name)\(hint)",
      missing: (end + 1)...(next.first - 1))
  }

  /// Throws ``QueueError/Code-swift.struct/dataLost`` when the first segment does not begin where the
  /// log begins (sequence 1, or its anchor): segment files before it were deleted.
  func checkHead(_ names: [String]) throws(QueueError) {
    guard let first = names.first.flatMap(LogFormat.firstSequence(ofSegmentNamed:)) else { return }
    let start = try LogAnchor.read(logDirectory: logDirectory, fileSystem: fileSystem)?.firstSequence ?? 1
    guard first > start else { return }
    throw Self.missingHead(start: start, first: first, segment: names[0])
  }

  static func missingHead(start: UInt64, first: UInt64, segment: String) -> QueueError {
    QueueError(
      code: .dataLost,
      message:
        "sequences \(start)–\(first - 1) are missing: the log's first segment is \(segment), which starts at sequence \(first); the segment files before it were deleted or moved",
      missing: start...(first - 1))
  }

  /// The sequence of the last complete record (0 for an empty log); a batch being appended is not
  /// counted.
  package func lastSequence() throws(QueueError) -> UInt64 {
    let names = try EventLog.segmentNames(in: logDirectory, fileSystem: fileSystem)
    for name in names.reversed() {
      let scan = SegmentScan(name: name, bytes: try fileSystem.read(logDirectory + "/" + name, from: 0))
      // A last segment without a complete header is being created: the one before ends the log.
      guard case .success(let first) = scan.header else { continue }
      return scan.batches.last?.header.lastSequence ?? first - 1
    }
    return (try LogAnchor.read(logDirectory: logDirectory, fileSystem: fileSystem)?.firstSequence ?? 1) - 1
  }

  /// Delivers every record from `sequence` on and then each new one as it is appended, until `body`
  /// returns false or the task is cancelled. Checks for new records every `pollInterval`, so it works
  /// across processes.
  package func follow(
    from sequence: UInt64 = 1, pollInterval: Duration = .milliseconds(20),
    _ body: (LogRecord) async throws -> Bool
  ) async throws {
    var cursor = LogCursor(from: sequence)
    while !Task.isCancelled {
      var batch: [LogRecord] = []
      try read(&cursor) { batch.append($0) }
      for record in batch {
        guard try await body(record) else { return }
      }
      if batch.isEmpty { try await Task.sleep(for: pollInterval) }
    }
  }
}
