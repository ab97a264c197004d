/// A batch found in a segment, with where it is and the SHA-256 of its frame when computed.
public struct LocatedBatch: Sendable, Hashable {
  /// Segment file name, e.g. `00000000000000000001.seg`.
  public var segment: String
  /// Byte offset of the frame in the segment file.
  public var offset: Int
  public var header: BatchHeader
}

/// Where reading a segment stopped before its end, and why.
struct SegmentStop: Sendable {
  var offset: Int
  var problem: FrameProblem
}

/// Reads the batches of one segment's bytes, checking lengths and checksums.
struct SegmentScan {
  let name: String
  let bytes: [UInt8]
  /// The first sequence in the header, or why the header is invalid.
  let header: Result<UInt64, LogFormat.HeaderProblem>
  var batches: [LocatedBatch] = []
  var stop: SegmentStop?

  init(name: String, bytes: [UInt8], from startOffset: Int = LogFormat.segmentHeaderSize) {
    self.name = name
    self.bytes = bytes
    header = bytes.withUnsafeBytes { LogFormat.parseSegmentHeader($0) }
    guard case .success = header else { return }
    var offset = max(startOffset, LogFormat.segmentHeaderSize)
    bytes.withUnsafeBytes { buffer in
      while offset < buffer.count {
        switch LogFormat.parseBatch(buffer, at: offset) {
        case .success(let header):
          batches.append(LocatedBatch(segment: name, offset: offset, header: header))
          offset += header.frameSize
        case .failure(let problem):
          stop = SegmentStop(offset: offset, problem: problem)
          return
        }
      }
    }
  }

  /// True when the bytes from the stop on look like an interrupted append rather than damage:
  /// the frame is cut off, its length is garbage or zero, or no valid frame follows the bad one.
  var stopIsTornTail: Bool {
    guard let stop else { return false }
    switch stop.problem {
    case .truncated, .badLength:
      return true
    case .badBody:
      return false
    case .badChecksum:
      return bytes.withUnsafeBytes { buffer in
        let declared = Int(buffer.loadLittleEndian(UInt32.self, at: stop.offset))
        let next = stop.offset + declared
        guard next < buffer.count else { return true }
        if case .success = LogFormat.parseBatch(buffer, at: next) { return false }
        return true
      }
    }
  }

  func frame(of batch: LocatedBatch) -> ArraySlice<UInt8> {
    bytes[batch.offset..<(batch.offset + batch.header.frameSize)]
  }

  func hash(of batch: LocatedBatch) -> [UInt8] {
    frame(of: batch).withUnsafeBytes { LogFormat.hash(ofFrame: $0) }
  }
}
