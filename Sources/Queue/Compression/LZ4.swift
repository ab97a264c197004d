import CLZ4
package import GPSModel

/// LZ4 block compression through the system's liblz4.
///
/// The event log compresses batch bodies with it; the stored (compressed) bytes are what the batch
/// checksum covers.
package enum LZ4 {
  /// Compresses `input` into a new LZ4 block.
  package static func compress(_ input: [UInt8]) -> [UInt8] {
    guard !input.isEmpty else { return [] }
    let bound = Int(LZ4_compressBound(Int32(input.count)))
    var output = [UInt8](repeating: 0, count: bound)
    let written = input.withUnsafeBufferPointer { source in
      output.withUnsafeMutableBufferPointer { destination in
        source.withMemoryRebound(to: CChar.self) { source in
          destination.withMemoryRebound(to: CChar.self) { destination in
            LZ4_compress_default(
              source.baseAddress, destination.baseAddress, Int32(source.count), Int32(destination.count))
          }
        }
      }
    }
    precondition(written > 0, "LZ4_compress_default failed with a bound-sized buffer")
    output.removeSubrange(Int(written)...)
    return output
  }

  /// Decompresses an LZ4 block whose original size is exactly `originalSize` bytes.
  package static func decompress(_ input: [UInt8], originalSize: Int) throws(QueueError) -> [UInt8] {
    guard originalSize > 0 else {
      guard input.isEmpty else {
        throw QueueError(code: .corrupt, message: "LZ4 block of \(input.count) bytes for an empty body")
      }
      return []
    }
    var output = [UInt8](repeating: 0, count: originalSize)
    let read = input.withUnsafeBufferPointer { source in
      output.withUnsafeMutableBufferPointer { destination in
        source.withMemoryRebound(to: CChar.self) { source in
          destination.withMemoryRebound(to: CChar.self) { destination in
            LZ4_decompress_safe(
              source.baseAddress, destination.baseAddress, Int32(source.count), Int32(destination.count))
          }
        }
      }
    }
    guard read == originalSize else {
      throw QueueError(
        code: .corrupt,
        message: "LZ4 block does not decode to the expected \(originalSize) bytes (liblz4 returned \(read))")
    }
    return output
  }
}
