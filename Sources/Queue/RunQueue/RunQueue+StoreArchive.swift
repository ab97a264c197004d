import Foundation
package import GPSModel
import Synchronization

// Archiving a log whose durable home is a store: the store records the archive, and every
// server's copy of the log follows the store's anchor.
extension RunQueue {
  /// The store the log commits to, when it also records archives.
  var archiveStore: (any ArchiveStore)? { log.batchStore as? any ArchiveStore }

  /// After the archive's note (at `noteSequence`): the store commits the anchor, a checkpoint of
  /// the run index and the removal of the archived batches; then this copy of the log adopts the
  /// anchor. Returns where the retained log begins. The caller holds `archiving`.
  func commitArchive(
    _ note: Gps_V1_LogSegmentsArchived, noteSequence: UInt64, at time: Timestamp, to store: any ArchiveStore
  ) throws(QueueError) -> UInt64 {
    let anchor = Self.anchor(after: note, noteSequence: noteSequence, at: time, previous: try store.anchor()?.anchor)
    func stopped(_ problem: String) -> QueueError {
      QueueError(
        code: .io,
        message:
          "archiving stopped after its note (event \(noteSequence)) was recorded (\(problem)): the next archive, by whichever server leads, finishes it; nothing is lost"
      )
    }
    guard let indexer else { throw stopped("a store's log is archived only by a server with a run index") }
    let file = directory + "/index/checkpoint.db"
    if try fileSystem.size(of: file) != nil { try fileSystem.remove(file) }
    defer { try? fileSystem.remove(file) }
    do throws(QueueError) {
      let checkpoint = try indexer.copy(to: file)
      guard checkpoint >= anchor.firstSequence else {
        throw QueueError(
          code: .io, message: "the run index reaches sequence \(checkpoint), before where the log would begin")
      }
      try store.commitArchive(anchor: anchor, deleted: note.deleted, checkpointFile: file)
    } catch {
      throw stopped(error.message)
    }
    try adopt(anchor, deleted: note.deleted)
    return logStart
  }

  /// Brings this copy of a store's log to the store's anchor: the local segments wholly before it
  /// move to `DATA/archive/` (or are deleted, as the store's were), behind an anchor of their own,
  /// once the run index holds their runs. A copy's segments need not end where the leader's did:
  /// its new start is its last segment that begins at or before the store's. No note is written
  /// (the leader's is in the log). Returns whether anything moved.
  @discardableResult
  package func adoptArchive(_ anchor: LogAnchor, deleted: Bool) throws(QueueError) -> Bool {
    try archiving.withLock { _ throws(QueueError) -> Bool in try adopt(anchor, deleted: deleted) }
  }

  @discardableResult
  private func adopt(_ stored: LogAnchor, deleted: Bool) throws(QueueError) -> Bool {
    let logDirectory = log.logDirectory
    let local = try LogAnchor.read(logDirectory: logDirectory, fileSystem: fileSystem)
    let names = try EventLog.segmentNames(in: logDirectory, fileSystem: fileSystem)
    let starts = names.compactMap { LogFormat.firstSequence(ofSegmentNamed: $0) }
    guard let start = starts.last(where: { $0 <= stored.firstSequence }), start > (local?.firstSequence ?? 1),
      try coveredSequence() >= start - 1
    else { return false }
    let reader = LogReader(directory: directory, fileSystem: fileSystem)
    let previousHash =
      start == stored.firstSequence ? stored.previousHashBytes : try reader.batchHash(endingAt: start - 1)
    guard let previousHash else {
      throw QueueError(code: .corrupt, message: "the log has no batch that ends at sequence \(start - 1)")
    }
    let anchor = LogAnchor(
      firstSequence: start, previousHash: Data(previousHash), acceptedBy: local?.acceptedBy,
      acceptedAt: local?.acceptedAt,
      archive: LogAnchor.Archive(
        firstSequence: local?.archive?.firstSequence ?? local?.firstSequence ?? 1,
        previousHash: local?.archive?.previousHash ?? local?.previousHash ?? Data(LogFormat.zeroHash),
        archivedBy: stored.archive?.archivedBy ?? "the leader", archivedAt: stored.archive?.archivedAt ?? "",
        noteSequence: stored.archive?.noteSequence))
    try anchor.write(logDirectory: logDirectory, fileSystem: fileSystem)
    try EventLog.finishArchiving(before: start, names: names, logDirectory: logDirectory, fileSystem: fileSystem)
    if deleted {
      let archive = reader.archiveDirectory
      for (name, first) in zip(names, starts) where first < start {
        if try fileSystem.size(of: archive + "/" + name) != nil { try fileSystem.remove(archive + "/" + name) }
      }
      try fileSystem.syncDirectory(archive)
    }
    retainedStart.withLock { $0 = start }
    return true
  }

  /// Starts a new copy of a store's log whose head was archived, in the empty data directory
  /// `directory`: the run index from the store's checkpoint (the file at `checkpoint`, moved into
  /// place), the store's anchor, and an empty first segment at the anchor; the copy's batches are
  /// then appended from there.
  package static func beginCopy(
    directory: String, anchor: LogAnchor, checkpoint: String, fileSystem: any FileSystem = PosixFileSystem()
  ) throws(QueueError) {
    let logDirectory = directory + "/log"
    try fileSystem.createDirectory(directory)
    try fileSystem.createDirectory(logDirectory)
    guard try EventLog.segmentNames(in: logDirectory, fileSystem: fileSystem).isEmpty else {
      throw QueueError(code: .invalidArgument, message: "\(directory) holds a log already")
    }
    let index = RunStore.path(in: directory)
    try fileSystem.createDirectory(directory + "/index")
    try RunStore.removeFiles(at: index, fileSystem: fileSystem)
    try fileSystem.rename(checkpoint, to: index)
    try fileSystem.syncDirectory(directory + "/index")
    try anchor.write(logDirectory: logDirectory, fileSystem: fileSystem)
    let file = try fileSystem.openForAppend(
      logDirectory + "/" + LogFormat.segmentName(firstSequence: anchor.firstSequence), create: true)
    defer { file.close() }
    try file.append(LogFormat.segmentHeader(firstSequence: anchor.firstSequence))
    try file.sync()
    try fileSystem.syncDirectory(logDirectory)
  }
}

extension RunQueue {
  /// Copies the run index of the data directory `directory` (whose lock the caller holds) to
  /// `path` as it is (SQLite's `VACUUM INTO`) and returns its checkpoint: for a log whose head was
  /// archived, the state a store's new copies start from. Nil when the directory has no index.
  package static func copyRunIndex(
    directory: String, to path: String, fileSystem: any FileSystem = PosixFileSystem()
  ) throws(QueueError) -> (sequence: UInt64, batchHash: [UInt8])? {
    guard try fileSystem.size(of: RunStore.path(in: directory)) != nil else { return nil }
    let store = try RunStore(directory: directory, fileSystem: fileSystem, schema: false)
    let checkpoint = try store.checkpoint()
    try store.connection.copy(into: path)
    return (checkpoint.sequence, checkpoint.batchHash)
  }
}
