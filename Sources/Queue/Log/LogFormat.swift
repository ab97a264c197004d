import Crypto
import GPSModel

/// The on-disk format of the event log; `docs/log-format.md` documents it byte by byte.
package enum LogFormat {
  /// First bytes of every segment file.
  package static let segmentMagic: [UInt8] = Array("GPS-LOG\0".utf8)
  /// Version of the segment and batch layout. Readers refuse versions they do not know.
  package static let version: UInt16 = 1
  package static let segmentHeaderSize = 32
  package static let batchHeaderSize = 64
  /// Bit 0 of a batch's flags: the stored body is an LZ4 block.
  package static let flagLZ4: UInt16 = 1
  /// Largest frame accepted when reading (a bigger length field is corruption, not a big batch).
  package static let maxFrameSize = 1 << 30
  package static let zeroHash = [UInt8](repeating: 0, count: 32)

  /// `00000000000000000042.seg` for a segment whose first sequence is 42.
  package static func segmentName(firstSequence: UInt64) -> String {
    paddedSequence(firstSequence) + ".seg"
  }

  /// A sequence as 20 decimal digits, so file names sort in sequence order.
  package static func paddedSequence(_ sequence: UInt64) -> String {
    let digits = String(sequence)
    return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
  }

  /// The first sequence encoded in a segment file name, or nil for other files.
  package static func firstSequence(ofSegmentNamed name: String) -> UInt64? {
    guard name.hasSuffix(".seg"), name.utf8.count == 24 else { return nil }
    return UInt64(name.dropLast(4))
  }

  /// The 32-byte segment header.
  package static func segmentHeader(firstSequence: UInt64) -> [UInt8] {
    var bytes = segmentMagic
    bytes.appendLittleEndian(version)
    bytes.appendLittleEndian(UInt16(segmentHeaderSize))
    bytes.appendLittleEndian(UInt32(0))
    bytes.appendLittleEndian(firstSequence)
    bytes.appendLittleEndian(CRC32C.checksum(bytes))
    bytes.appendLittleEndian(UInt32(0))
    return bytes
  }

  /// Checks a segment header; returns its first sequence or a reason it is invalid.
  static func parseSegmentHeader(_ bytes: UnsafeRawBufferPointer) -> Result<UInt64, HeaderProblem> {
    guard bytes.count >= segmentHeaderSize else { return .failure(.truncated) }
    guard Array(bytes[0..<8]) == segmentMagic else { return .failure(.badMagic) }
    guard
      CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<24])) == bytes.loadLittleEndian(UInt32.self, at: 24)
    else { return .failure(.badChecksum) }
    let version = bytes.loadLittleEndian(UInt16.self, at: 8)
    guard version == Self.version else { return .failure(.unknownVersion(version)) }
    return .success(bytes.loadLittleEndian(UInt64.self, at: 16))
  }

  package enum HeaderProblem: Error, CustomStringConvertible {
    case truncated, badMagic, badChecksum, unknownVersion(UInt16)

    package var description: String {
      switch self {
      case .truncated: "the segment header is truncated"
      case .badMagic: "the file does not start with the GPS log magic bytes"
      case .badChecksum: "the segment header checksum does not match"
      case .unknownVersion(let version):
        "unknown segment version \(version) (this build reads version \(LogFormat.version))"
      }
    }
  }

  /// Encodes a batch frame. Bodies of at least `compressionThreshold` bytes are LZ4-compressed when
  /// that makes them smaller.
  package static func encodeBatch(
    baseSequence: UInt64, records: some Collection<[UInt8]>, previousHash: [UInt8], compressionThreshold: Int
  ) -> [UInt8] {
    var body: [UInt8] = []
    body.reserveCapacity(records.reduce(0) { $0 + 4 + $1.count })
    for record in records {
      body.appendLittleEndian(UInt32(record.count))
      body.append(contentsOf: record)
    }
    var flags: UInt16 = 0
    var stored = body
    if body.count >= compressionThreshold {
      let compressed = LZ4.compress(body)
      if compressed.count < body.count {
        stored = compressed
        flags |= flagLZ4
      }
    }
    var frame: [UInt8] = []
    frame.reserveCapacity(batchHeaderSize + stored.count)
    frame.appendLittleEndian(UInt32(batchHeaderSize + stored.count))
    frame.appendLittleEndian(UInt32(0))  // checksum, filled below
    frame.appendLittleEndian(baseSequence)
    frame.appendLittleEndian(UInt32(records.count))
    frame.appendLittleEndian(flags)
    frame.appendLittleEndian(UInt16(0))
    frame.appendLittleEndian(UInt32(body.count))
    frame.appendLittleEndian(UInt32(0))
    frame.append(contentsOf: previousHash)
    frame.append(contentsOf: stored)
    frame.storeLittleEndian(CRC32C.checksum(frame[8...]), at: 4)
    return frame
  }

  /// SHA-256 of a whole batch frame: what the next batch stores as its previous hash.
  package static func hash(ofFrame frame: UnsafeRawBufferPointer) -> [UInt8] {
    Array(SHA256.hash(data: frame))
  }
}

/// The fixed header of a batch frame, as read from disk.
package struct BatchHeader: Sendable, Hashable {
  package var frameSize: Int
  package var checksum: UInt32
  package var baseSequence: UInt64
  package var count: Int
  package var flags: UInt16
  package var bodySize: Int
  package var previousHash: [UInt8]

  /// The last sequence in the batch (equal to `baseSequence - 1` for an empty batch).
  package var lastSequence: UInt64 { baseSequence &+ UInt64(count) &- 1 }
}

/// Why the bytes at an offset are not a valid batch frame.
package enum FrameProblem: Error, Sendable, Hashable, CustomStringConvertible {
  /// Fewer bytes remain than the header or the declared length needs.
  case truncated
  /// The length field is impossible (all zeros, smaller than a header, absurdly large).
  case badLength
  case badChecksum
  /// The checksum matched but the body does not decode into the declared records.
  case badBody(String)

  package var description: String {
    switch self {
    case .truncated: "the batch is cut off by the end of the file"
    case .badLength: "the batch length field is invalid"
    case .badChecksum: "the batch checksum does not match its bytes"
    case .badBody(let reason): "the batch body does not decode: \(reason)"
    }
  }
}

extension LogFormat {
  /// Parses and checks the frame at `offset`: length, checksum. Returns the header.
  static func parseBatch(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> Result<BatchHeader, FrameProblem> {
    guard bytes.count - offset >= batchHeaderSize else {
      return .failure(
        bytes.count - offset >= 4 && bytes.loadLittleEndian(UInt32.self, at: offset) == 0 ? .badLength : .truncated)
    }
    let frameSize = Int(bytes.loadLittleEndian(UInt32.self, at: offset))
    guard frameSize >= batchHeaderSize, frameSize <= maxFrameSize else { return .failure(.badLength) }
    guard bytes.count - offset >= frameSize else { return .failure(.truncated) }
    let checksum = bytes.loadLittleEndian(UInt32.self, at: offset + 4)
    let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[(offset + 8)..<(offset + frameSize)]))
    guard checksum == computed else { return .failure(.badChecksum) }
    return .success(
      BatchHeader(
        frameSize: frameSize,
        checksum: checksum,
        baseSequence: bytes.loadLittleEndian(UInt64.self, at: offset + 8),
        count: Int(bytes.loadLittleEndian(UInt32.self, at: offset + 16)),
        flags: bytes.loadLittleEndian(UInt16.self, at: offset + 20),
        bodySize: Int(bytes.loadLittleEndian(UInt32.self, at: offset + 24)),
        previousHash: Array(bytes[(offset + 32)..<(offset + 64)])
      ))
  }

  /// Decodes the records of a checked batch.
  static func decodeRecords(
    _ bytes: UnsafeRawBufferPointer, at offset: Int, header: BatchHeader
  ) -> Result<[[UInt8]], FrameProblem> {
    guard header.flags & ~flagLZ4 == 0 else {
      return .failure(.badBody("unknown flags \(header.flags); written by a newer GPS?"))
    }
    // What LZ4 can address; a larger size can only be damage, and must not become an allocation.
    guard header.bodySize <= Int(Int32.max) else {
      return .failure(.badBody("the header says the body is \(header.bodySize) bytes, more than a batch can hold"))
    }
    let stored = UnsafeRawBufferPointer(rebasing: bytes[(offset + batchHeaderSize)..<(offset + header.frameSize)])
    let body: [UInt8]
    // LZ4 expands a block at most 255-fold: a larger size is damage, and must not become a
    // gigabyte allocation from a few bytes (found by make fuzz as slow inputs).
    if header.flags & flagLZ4 != 0, header.bodySize > stored.count * 255 + 16 {
      return .failure(
        .badBody("the header says the body is \(header.bodySize) bytes, more than \(stored.count) LZ4 bytes can hold"))
    }
    if header.flags & flagLZ4 != 0 {
      do {
        body = try LZ4.decompress(Array(stored), originalSize: header.bodySize)
      } catch {
        return .failure(.badBody(error.message))
      }
    } else {
      guard stored.count == header.bodySize else {
        return .failure(.badBody("body is \(stored.count) bytes, header says \(header.bodySize)"))
      }
      body = Array(stored)
    }
    return body.withUnsafeBytes { body in
      var records: [[UInt8]] = []
      // Each record takes at least its 4-byte length: a count beyond that is damage, not a size.
      records.reserveCapacity(min(header.count, body.count / 4))
      var position = 0
      while position < body.count {
        guard body.count - position >= 4 else { return .failure(.badBody("a record length is cut off")) }
        let length = Int(body.loadLittleEndian(UInt32.self, at: position))
        position += 4
        guard body.count - position >= length else { return .failure(.badBody("a record overruns the body")) }
        records.append(Array(body[position..<(position + length)]))
        position += length
      }
      guard records.count == header.count else {
        return .failure(.badBody("\(records.count) records in the body, header says \(header.count)"))
      }
      return .success(records)
    }
  }
}
