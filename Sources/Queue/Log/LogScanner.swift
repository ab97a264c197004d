import GPSModel

/// A batch found in a segment, with where it is and the SHA-256 of its frame when computed.
package struct LocatedBatch: Sendable, Hashable {
  /// Segment file name, e.g. `00000000000000000001.seg`.
  package var segment: String
  /// Byte offset of the frame in the segment file.
  package var offset: Int
  package var header: BatchHeader
}

/// Where reading a segment stopped before its end, and why.
struct SegmentStop: Sendable {
  var offset: Int
  var problem: FrameProblem
}

/// Reads the batches of one segment's bytes, checking lengths and checksums.
///
/// `bytes` may start at a later frame boundary (`fileOffset`), when a reader continues where it
/// stopped; offsets in batches and stops are always file offsets.
package struct SegmentScan {
  package let name: String
  package let bytes: [UInt8]
  /// The file offset of `bytes[0]`.
  let fileOffset: Int
  /// The first sequence in the header, or why the header is invalid.
  package let header: Result<UInt64, LogFormat.HeaderProblem>
  package var batches: [LocatedBatch] = []
  var stop: SegmentStop?

  package init(name: String, bytes: [UInt8], fileOffset: Int = 0) {
    self.name = name
    self.bytes = bytes
    self.fileOffset = fileOffset
    if fileOffset == 0 {
      header = bytes.withUnsafeBytes { LogFormat.parseSegmentHeader($0) }
    } else {
      header = .success(LogFormat.firstSequence(ofSegmentNamed: name) ?? 0)
    }
    guard case .success = header else { return }
    var local = fileOffset == 0 ? LogFormat.segmentHeaderSize : 0
    bytes.withUnsafeBytes { buffer in
      while local < buffer.count {
        switch LogFormat.parseBatch(buffer, at: local) {
        case .success(let header):
          batches.append(LocatedBatch(segment: name, offset: fileOffset + local, header: header))
          local += header.frameSize
        case .failure(let problem):
          stop = SegmentStop(offset: fileOffset + local, problem: problem)
          return
        }
      }
    }
  }

  /// File offset just past the last complete batch.
  package var endOfBatches: Int {
    batches.last.map { $0.offset + $0.header.frameSize } ?? max(fileOffset, LogFormat.segmentHeaderSize)
  }

  /// True when the bytes from the stop on look like an interrupted append rather than damage:
  /// the frame is cut off, its length is garbage or zero, or no valid frame follows the bad one.
  package var stopIsTornTail: Bool {
    guard let stop else { return false }
    switch stop.problem {
    case .truncated, .badLength:
      return true
    case .badBody:
      return false
    case .badChecksum:
      return bytes.withUnsafeBytes { buffer in
        let local = stop.offset - fileOffset
        let declared = Int(buffer.loadLittleEndian(UInt32.self, at: local))
        let next = local + declared
        guard next < buffer.count else { return true }
        if case .success = LogFormat.parseBatch(buffer, at: next) { return false }
        return true
      }
    }
  }

  /// The sequences the frame at the stop would have held, when its header survived the tear and
  /// names the sequence that was due (`expected`) and a plausible count; nil for garbage or zeros.
  package func tornBatchSequences(expected: UInt64) -> ClosedRange<UInt64>? {
    guard let stop else { return nil }
    let local = stop.offset - fileOffset
    guard bytes.count - local >= 20 else { return nil }
    return bytes.withUnsafeBytes { buffer -> ClosedRange<UInt64>? in
      let base = buffer.loadLittleEndian(UInt64.self, at: local + 8)
      let count = UInt64(buffer.loadLittleEndian(UInt32.self, at: local + 16))
      guard base == expected, count > 0, count <= UInt64(LogFormat.maxFrameSize) else { return nil }
      let (last, overflow) = base.addingReportingOverflow(count - 1)
      return overflow ? nil : base...last
    }
  }

  package func frame(of batch: LocatedBatch) -> ArraySlice<UInt8> {
    bytes[(batch.offset - fileOffset)..<(batch.offset - fileOffset + batch.header.frameSize)]
  }

  package func hash(of batch: LocatedBatch) -> [UInt8] {
    frame(of: batch).withUnsafeBytes { LogFormat.hash(ofFrame: $0) }
  }

  package func records(of batch: LocatedBatch) -> Result<[[UInt8]], FrameProblem> {
    bytes.withUnsafeBytes { LogFormat.decodeRecords($0, at: batch.offset - fileOffset, header: batch.header) }
  }
}
