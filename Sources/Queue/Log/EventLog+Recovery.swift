package import GPSModel

extension EventLog {
  struct Recovered {
    var report: RecoveryReport
    var segment: String
    var segmentSize: Int
    var lastSequence: UInt64
    var lastHash: [UInt8]
  }

  /// Checks every segment (headers, lengths, checksums, sequence continuity), truncates an interrupted
  /// append at the very end, and finds where appending continues. Anything else that is wrong is
  /// corruption: nothing is changed and the error names segment, offset and sequence.
  static func recover(
    logDirectory: String, scanSealedSegments: Bool = true, fileSystem: any FileSystem
  ) throws(QueueError) -> Recovered {
    var report = RecoveryReport()
    let anchor = try LogAnchor.read(logDirectory: logDirectory, fileSystem: fileSystem)
    let start = anchor?.firstSequence ?? 1
    while true {
      let names = try segmentNames(in: logDirectory, fileSystem: fileSystem)
      guard let lastName = names.last else {
        if let anchor {
          throw QueueError(
            code: .dataLost,
            message:
              "the log holds no segment, but its anchor says it begins at sequence \(anchor.firstSequence): every segment file was deleted",
            missing: anchor.firstSequence...UInt64.max)
        }
        let name = LogFormat.segmentName(firstSequence: 1)
        let file = try fileSystem.openForAppend(logDirectory + "/" + name, create: true)
        defer { file.close() }
        try file.append(LogFormat.segmentHeader(firstSequence: 1))
        try file.sync()
        try fileSystem.syncDirectory(logDirectory)
        return Recovered(
          report: report, segment: name, segmentSize: LogFormat.segmentHeaderSize, lastSequence: 0,
          lastHash: LogFormat.zeroHash)
      }
      var expected: UInt64?
      var lastHash = anchor?.previousHashBytes ?? LogFormat.zeroHash
      var restart = false
      for (position, name) in names.enumerated() {
        let isLast = name == lastName
        let path = logDirectory + "/" + name
        // A sealed segment the caller checks later: its header only, and where the next begins.
        let headerOnly = !isLast && !scanSealedSegments
        let bytes = try fileSystem.read(path, from: 0, maxBytes: headerOnly ? LogFormat.segmentHeaderSize : .max)
        let scan = SegmentScan(name: name, bytes: bytes)
        let first: UInt64
        switch scan.header {
        case .failure(let problem):
          // A segment created but interrupted before its header was durable: only the last one, and
          // only when it holds nothing but zeros or less than a header.
          if isLast, bytes.count < LogFormat.segmentHeaderSize || bytes.allSatisfy({ $0 == 0 }) {
            try fileSystem.remove(path)
            try fileSystem.syncDirectory(logDirectory)
            report.removedSegment = name
            restart = true
          } else {
            throw corruption(segment: name, offset: 0, sequence: expected, problem: "\(problem)")
          }
          first = 0
        case .success(let value):
          first = value
        }
        if restart { break }
        guard first == LogFormat.firstSequence(ofSegmentNamed: name) else {
          throw corruption(
            segment: name, offset: 0, sequence: expected,
            problem: "the header says the segment starts at sequence \(first)")
        }
        if expected == nil, first < start, let anchor, anchor.archive != nil {
          // Archiving wrote the anchor and stopped before it moved every segment: finish it.
          try finishArchiving(before: start, names: names, logDirectory: logDirectory, fileSystem: fileSystem)
          report.finishedArchiving = true
          restart = true
          break
        }
        if expected == nil, first != start {
          guard first > start else {
            throw corruption(
              segment: name, offset: 0, sequence: nil,
              problem: "the segment starts at sequence \(first), before the log's anchor at \(start)")
          }
          throw LogReader.missingHead(start: start, first: first, segment: name)
        }
        if let expected, first != expected {
          throw corruption(
            segment: name, offset: 0, sequence: expected,
            problem:
              "the segment starts at sequence \(first) but the previous one ends at \(expected - 1); a segment is missing or extra"
          )
        }
        if headerOnly {
          expected = LogFormat.firstSequence(ofSegmentNamed: names[position + 1])!
          continue
        }
        for batch in scan.batches {
          let base = expected ?? first
          guard batch.header.baseSequence == base else {
            throw corruption(
              segment: name, offset: batch.offset, sequence: base,
              problem: "the batch starts at sequence \(batch.header.baseSequence), expected \(base)")
          }
          expected = batch.header.lastSequence &+ 1
        }
        expected = expected ?? first
        if let last = scan.batches.last {
          lastHash = scan.hash(of: last)
        } else if isLast, !scanSealedSegments, position > 0 {
          // A last segment just begun: the chain continues from the previous one's last batch.
          let previous = names[position - 1]
          let previousScan = SegmentScan(
            name: previous, bytes: try fileSystem.read(logDirectory + "/" + previous, from: 0))
          guard let batch = previousScan.batches.last, previousScan.stop == nil,
            batch.header.lastSequence &+ 1 == first
          else {
            throw corruption(
              segment: previous, offset: previousScan.endOfBatches, sequence: first,
              problem: "the sealed segment does not end at sequence \(first - 1), where the next one begins")
          }
          lastHash = previousScan.hash(of: batch)
        }
        if let stop = scan.stop {
          guard isLast, scan.stopIsTornTail else {
            throw corruption(segment: name, offset: stop.offset, sequence: expected, problem: "\(stop.problem)")
          }
          try fileSystem.truncate(path, to: UInt64(stop.offset))
          report.truncatedSegment = name
          report.truncatedFromOffset = stop.offset
          report.truncatedBytes = bytes.count - stop.offset
          report.droppedFromSequence = expected
          report.droppedToSequence = scan.tornBatchSequences(expected: expected!)?.upperBound
        }
        if isLast {
          let size = scan.stop?.offset ?? bytes.count
          return Recovered(
            report: report, segment: name, segmentSize: size, lastSequence: expected! - 1, lastHash: lastHash)
        }
      }
    }
  }

  /// Moves the segments wholly before `start` (the anchor an interrupted archive wrote) to
  /// `DATA/archive/`. A segment that is in both folders is refused: which copy is right is for a
  /// person to say.
  static func finishArchiving(
    before start: UInt64, names: [String], logDirectory: String, fileSystem: any FileSystem
  ) throws(QueueError) {
    let archive = directoryName(logDirectory) + "/archive"
    guard names.contains(LogFormat.segmentName(firstSequence: start)) else {
      throw corruption(
        segment: names[0], offset: 0, sequence: nil,
        problem:
          "the log's anchor says it begins at sequence \(start), but no segment starts there: segment files were renamed or removed"
      )
    }
    try fileSystem.createDirectory(archive)
    for name in names where LogFormat.firstSequence(ofSegmentNamed: name)! < start {
      guard try fileSystem.size(of: archive + "/" + name) == nil else {
        throw QueueError(
          code: .corrupt,
          message:
            "segment \(name) is both in log/ and in archive/, though the log's anchor says it was archived (it begins at sequence \(start)); remove the copy in log/ if it is the same file, and start again"
        )
      }
      try fileSystem.rename(logDirectory + "/" + name, to: archive + "/" + name)
    }
    try fileSystem.syncDirectory(archive)
    try fileSystem.syncDirectory(logDirectory)
  }

  package static func segmentNames(in logDirectory: String, fileSystem: any FileSystem) throws(QueueError) -> [String] {
    try fileSystem.list(logDirectory).filter { LogFormat.firstSequence(ofSegmentNamed: $0) != nil }.sorted()
  }

  static func corruption(segment: String, offset: Int, sequence: UInt64?, problem: String) -> QueueError {
    let at = sequence.map { ", sequence \($0)" } ?? ""
    return QueueError(
      code: .corrupt,
      message:
        "log corrupt in segment \(segment) at byte offset \(offset)\(at): \(problem); nothing was changed"
    )
  }
}
