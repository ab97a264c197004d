package import GPSModel

/// A batch as the log writes it: its frame (header, CRC, the previous batch's hash, the body) and
/// what a store indexes it by.
package struct SealedBatch: Sendable, Hashable {
  package var firstSequence: UInt64
  package var lastSequence: UInt64
  /// The frame exactly as the segment files hold it.
  package var frame: [UInt8]
  /// The SHA-256 of the frame: the next batch's previous hash.
  package var hash: [UInt8]

  package init(firstSequence: UInt64, lastSequence: UInt64, frame: [UInt8], hash: [UInt8]) {
    self.firstSequence = firstSequence
    self.lastSequence = lastSequence
    self.frame = frame
    self.hash = hash
  }

  /// A frame read from elsewhere (a store, another log): its header parsed and its checksum
  /// checked, so a damaged one never reaches a segment file.
  package init(frame: [UInt8]) throws(QueueError) {
    let header = frame.withUnsafeBytes { LogFormat.parseBatch($0, at: 0) }
    switch header {
    case .failure(let problem):
      throw QueueError(code: .corrupt, message: "a batch from the store is damaged: \(problem)")
    case .success(let header):
      guard header.frameSize == frame.count else {
        throw QueueError(
          code: .corrupt,
          message: "a batch from the store is \(frame.count) bytes but its header says \(header.frameSize)")
      }
      guard header.count > 0 else {
        throw QueueError(code: .corrupt, message: "a batch from the store at sequence \(header.baseSequence) is empty")
      }
      self.init(
        firstSequence: header.baseSequence, lastSequence: header.lastSequence, frame: frame,
        hash: frame.withUnsafeBytes { LogFormat.hash(ofFrame: $0) })
    }
  }

  /// The frame's header (length, checksum, sequences, the previous batch's hash).
  package var header: BatchHeader {
    get throws(QueueError) {
      switch frame.withUnsafeBytes({ LogFormat.parseBatch($0, at: 0) }) {
      case .success(let header): return header
      case .failure(let problem):
        throw QueueError(code: .corrupt, message: "batch \(firstSequence) is damaged: \(problem)")
      }
    }
  }

  /// The records the frame holds (each an encoded event).
  package func records() throws(QueueError) -> [[UInt8]] {
    let header = try header
    switch frame.withUnsafeBytes({ LogFormat.decodeRecords($0, at: 0, header: header) }) {
    case .success(let records): return records
    case .failure(let problem):
      throw QueueError(code: .corrupt, message: "batch \(firstSequence) is damaged: \(problem)")
    }
  }
}

/// Where a log commits each batch before its own segment files record it: the durable home of
/// the log when the segment files are a local copy (a PostgreSQL database shared by several
/// servers). The log's writer calls ``commit(_:)`` once per batch, in order, and acknowledges the
/// batch's appenders only once it returns; a throw stops the writer (nothing later is written) and
/// fails every appender of the batch and after it, none of which was acknowledged.
package protocol BatchStore: Sendable {
  /// Commits the batch, or throws when it is not committed: refused (another writer leads now), or
  /// the store unreachable. Called on the log's writer thread; it may block. An implementation that
  /// loses its connection mid-commit must learn whether the batch was committed before it answers:
  /// answering an error for a committed batch is allowed (the appenders are not acknowledged and
  /// retry by their keys), answering success for one that is not is not.
  func commit(_ batch: SealedBatch) throws(QueueError)
}

/// What archiving a log whose durable home is a store (``LogOptions/store``) records there, so
/// that every server's copy follows it and a new copy can start after the archived head: the
/// archive's intent before its note (whichever server leads next finishes it), then, in one
/// transaction under the leader's epoch, the log's new anchor, a checkpoint of the run index (the
/// runs the archived batches held, and the state a new copy starts from), and the removal of the
/// archived batches. Called on a blocking thread; each call may block until the store answers.
package protocol ArchiveStore: Sendable {
  /// The last sequence every live standby has copied: an archive never removes a batch one of
  /// them has not read yet. Nil: no standby is live.
  func archiveLimit() throws(QueueError) -> UInt64?
  /// The store's anchor and whether its archived batches were deleted rather than kept in files;
  /// nil: the store's log begins at sequence 1.
  func anchor() throws(QueueError) -> (anchor: LogAnchor, deleted: Bool)?
  /// The archive whose note may be in the log but whose anchor is not in the store yet.
  func archiveIntent() throws(QueueError) -> ArchiveIntent?
  /// Records the archive about to be noted, or (nil) forgets one that was never noted.
  func recordArchiveIntent(_ intent: ArchiveIntent?) throws(QueueError)
  /// In one transaction, fenced by the leader's epoch: `anchor`, the run index copy at
  /// `checkpointFile` (a SQLite file whose checkpoint is at or after the anchor), the batches
  /// before the anchor removed, and the intent cleared.
  func commitArchive(anchor: LogAnchor, deleted: Bool, checkpointFile: String) throws(QueueError)
}
