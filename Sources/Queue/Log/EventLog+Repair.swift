package import GPSModel

/// What ``EventLog/repair(directory:fileSystem:)`` removed.
package struct RepairReport: Sendable, Hashable {
  /// Where the log was cut, or nil when nothing was wrong.
  package var segment: String?
  package var offset: Int?
  /// Files that now hold the removed bytes (the tail of the cut segment, and whole later segments).
  package var sideFiles: [String] = []
  package var removedBytes = 0
  /// Intact batches, and the events they hold, among the removed bytes (kept in the side files).
  package var removedBatches = 0
  package var removedRecords: UInt64 = 0
  /// The log's last sequence after the repair.
  package var lastSequence: UInt64 = 0
}

extension EventLog {
  /// Cuts the log at its first bad batch, after copying the removed bytes to side files
  /// (`<segment>.removed-at-<offset>`; later segments are renamed `<segment>.removed`).
  /// Takes the directory's lock, so no writer may be running.
  package static func repair(
    directory: String, lock lockOptions: LockOptions = LockOptions(), fileSystem: any FileSystem = PosixFileSystem()
  ) throws(QueueError) -> RepairReport {
    let lock = try DirectoryLock(directory: directory, options: lockOptions)
    defer { lock.unlock() }
    let logDirectory = directory + "/log"
    let names = try segmentNames(in: logDirectory, fileSystem: fileSystem)
    var report = RepairReport()
    var expected: UInt64 = 1
    for (index, name) in names.enumerated() {
      let path = logDirectory + "/" + name
      let scan = SegmentScan(name: name, bytes: try fileSystem.read(path, from: 0))
      var cut: Int?
      switch scan.header {
      case .failure: cut = 0
      case .success(let first) where first != expected: cut = 0
      case .success:
        for batch in scan.batches {
          let decodes = scan.bytes.withUnsafeBytes {
            LogFormat.decodeRecords($0, at: batch.offset, header: batch.header)
          }
          guard batch.header.baseSequence == expected, case .success = decodes else {
            cut = batch.offset
            break
          }
          expected = batch.header.lastSequence &+ 1
        }
        if cut == nil, let stop = scan.stop { cut = stop.offset }
      }
      guard let cut else { continue }
      report.segment = name
      report.offset = cut
      report.removedBytes += scan.bytes.count - cut
      // What the side files hold that is still readable: the batches from the cut on.
      for batch in scan.batches where batch.offset >= cut {
        report.removedBatches += 1
        report.removedRecords += UInt64(batch.header.count)
      }
      if cut == 0 {
        // Nothing of the segment is kept: set the whole file aside.
        try fileSystem.rename(path, to: path + ".removed")
        report.sideFiles.append(path + ".removed")
      } else {
        let side = path + ".removed-at-\(cut)"
        try fileSystem.writeAtomically(side, contents: Array(scan.bytes[cut...]))
        report.sideFiles.append(side)
        try fileSystem.truncate(path, to: UInt64(cut))
      }
      for later in names[(index + 1)...] {
        let laterPath = logDirectory + "/" + later
        let laterScan = SegmentScan(name: later, bytes: try fileSystem.read(laterPath, from: 0))
        report.removedBytes += laterScan.bytes.count
        report.removedBatches += laterScan.batches.count
        report.removedRecords += laterScan.batches.reduce(0) { $0 + UInt64($1.header.count) }
        try fileSystem.rename(laterPath, to: laterPath + ".removed")
        report.sideFiles.append(laterPath + ".removed")
      }
      try fileSystem.syncDirectory(logDirectory)
      break
    }
    report.lastSequence = expected - 1
    return report
  }
}
