package import GPSModel

/// A snapshot: a state blob and the point of the log it covers.
package struct Snapshot: Sendable, Hashable {
  /// The last sequence whose event the state includes.
  package var lastSequence: UInt64
  /// SHA-256 of the batch frame that ends at `lastSequence`.
  package var batchHash: [UInt8]
  package var payload: [UInt8]

  package init(lastSequence: UInt64, batchHash: [UInt8], payload: [UInt8]) {
    self.lastSequence = lastSequence
    self.batchHash = batchHash
    self.payload = payload
  }
}

/// Stores snapshots in `DATA/snapshots/<last sequence>.snap`: written to a temp file, synced, renamed,
/// directory synced. Snapshots are caches: one that does not match the log is ignored.
package struct SnapshotStore: Sendable {
  package let directory: String
  let fileSystem: any FileSystem
  /// How many snapshots to keep; older ones are deleted after a write.
  package var keep = 2

  static let magic: [UInt8] = Array("GPS-SNAP".utf8)
  static let headerSize = 72

  package init(directory: String, fileSystem: any FileSystem = PosixFileSystem()) {
    self.directory = directory + "/snapshots"
    self.fileSystem = fileSystem
  }

  package func write(_ snapshot: Snapshot) throws(QueueError) {
    precondition(snapshot.batchHash.count == 32, "a batch hash is 32 bytes")
    try fileSystem.createDirectory(directory)
    var bytes = Self.magic
    bytes.appendLittleEndian(UInt16(1))
    bytes.appendLittleEndian(UInt16(0))
    bytes.appendLittleEndian(UInt32(0))
    bytes.appendLittleEndian(snapshot.lastSequence)
    bytes.append(contentsOf: snapshot.batchHash)
    bytes.appendLittleEndian(UInt64(snapshot.payload.count))
    bytes.appendLittleEndian(CRC32C.checksum(snapshot.payload))
    bytes.appendLittleEndian(CRC32C.checksum(bytes))
    bytes.append(contentsOf: snapshot.payload)
    let name = LogFormat.paddedSequence(snapshot.lastSequence) + ".snap"
    try fileSystem.writeAtomically(directory + "/" + name, contents: bytes)
    for old in try names().dropFirst(keep) { try fileSystem.remove(directory + "/" + old) }
  }

  /// The newest snapshot that matches the log in `dataDirectory`, or nil (then replay everything).
  /// Also returns why newer snapshots were skipped.
  ///
  /// An intact snapshot that covers sequences past the log's end is proof that the log lost them
  /// (snapshots are written only once their batch is durable): that throws
  /// ``QueueError/Code-swift.struct/dataLost`` naming the missing sequences, rather than silently
  /// replaying a shorter history. `lastBatch`, when the caller knows it (the writer does), is the
  /// log's end and saves reading the last segment for a snapshot of the whole log; a reader's end
  /// is read after the snapshots are listed, so a snapshot written meanwhile is never past it.
  package func loadNewest(
    matching reader: LogReader, lastBatch: (sequence: UInt64, hash: [UInt8])? = nil
  ) throws(QueueError) -> (snapshot: Snapshot?, skipped: [String]) {
    var skipped: [String] = []
    let listed = try names()
    var logEnd = lastBatch?.sequence
    for name in listed {
      guard let snapshot = Self.decode(try fileSystem.read(directory + "/" + name, from: 0)) else {
        skipped.append("\(name): damaged (checksum or size mismatch)")
        continue
      }
      let end: UInt64
      if let logEnd {
        end = logEnd
      } else {
        end = try reader.lastSequence()
        logEnd = end
      }
      guard snapshot.lastSequence <= end else {
        throw Self.loss(snapshot: name, covering: snapshot.lastSequence, logEnd: end)
      }
      let hash =
        if let lastBatch, lastBatch.sequence == snapshot.lastSequence {
          lastBatch.hash
        } else {
          try reader.batchHash(endingAt: snapshot.lastSequence)
        }
      guard hash == snapshot.batchHash else {
        skipped.append("\(name): does not match the log at sequence \(snapshot.lastSequence)")
        continue
      }
      return (snapshot, skipped)
    }
    return (nil, skipped)
  }

  /// Proof that the log lost sequences: snapshot `name` covers up to `last`, the log ends at `logEnd`.
  static func loss(snapshot name: String, covering last: UInt64, logEnd: UInt64) -> QueueError {
    QueueError(
      code: .dataLost,
      message:
        "sequences \(logEnd + 1)–\(last) are missing: snapshot \(name) covers them but the log ends at sequence \(logEnd); a segment file was deleted or truncated",
      missing: (logEnd + 1)...last)
  }

  /// Every intact snapshot, newest first, with its file name (for checks that need them all).
  func intactSnapshots() throws(QueueError) -> [(name: String, snapshot: Snapshot)] {
    var found: [(name: String, snapshot: Snapshot)] = []
    for name in try names() {
      if let snapshot = Self.decode(try fileSystem.read(directory + "/" + name, from: 0)) {
        found.append((name, snapshot))
      }
    }
    return found
  }

  /// Removes temp files a write left behind (a full disk, a crash between create and rename).
  func removeLeftovers() throws(QueueError) {
    guard try fileSystem.size(of: directory) != nil else { return }
    for name in try fileSystem.list(directory) where name.hasSuffix(".tmp") {
      try fileSystem.remove(directory + "/" + name)
    }
  }

  /// Snapshot file names, newest first.
  func names() throws(QueueError) -> [String] {
    guard try fileSystem.size(of: directory) != nil else { return [] }
    return try fileSystem.list(directory).filter { $0.hasSuffix(".snap") && $0.utf8.count == 25 }.sorted(by: >)
  }

  static func decode(_ file: consuming [UInt8]) -> Snapshot? {
    guard file.count >= headerSize, Array(file[0..<8]) == magic else { return nil }
    let header = file.withUnsafeBytes { buffer -> (sequence: UInt64, length: UInt64, crc: UInt32)? in
      guard buffer.loadLittleEndian(UInt16.self, at: 8) == 1,
        CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buffer[0..<68]))
          == buffer.loadLittleEndian(UInt32.self, at: 68)
      else { return nil }
      return (
        buffer.loadLittleEndian(UInt64.self, at: 16), buffer.loadLittleEndian(UInt64.self, at: 56),
        buffer.loadLittleEndian(UInt32.self, at: 64)
      )
    }
    guard let header, UInt64(file.count - headerSize) == header.length else { return nil }
    let batchHash = Array(file[24..<56])
    // Shift the payload down in place rather than copy it into a second buffer of its size.
    file.removeSubrange(0..<headerSize)
    guard CRC32C.checksum(file) == header.crc else { return nil }
    return Snapshot(lastSequence: header.sequence, batchHash: batchHash, payload: file)
  }
}

extension LogReader {
  /// The SHA-256 of the batch whose last record is `sequence`, or nil when no batch ends there.
  /// For the sequence just before an anchored log's start, the anchor's hash.
  package func batchHash(endingAt sequence: UInt64) throws(QueueError) -> [UInt8]? {
    if let anchor = try LogAnchor.read(logDirectory: logDirectory, fileSystem: fileSystem),
      anchor.firstSequence - 1 == sequence
    {
      return anchor.previousHashBytes
    }
    // Before the log's first segment: in an archived one, when DATA/archive/ holds it.
    let segments = try segments(for: LogCursor(from: sequence + 1), checkingHead: false)
    guard let segment = segments.last(where: { $0.first <= sequence }) else { return nil }
    let scan = SegmentScan(name: segment.name, bytes: try fileSystem.read(segment.path, from: 0))
    guard let batch = scan.batches.first(where: { $0.header.lastSequence == sequence }) else { return nil }
    return scan.hash(of: batch)
  }
}
