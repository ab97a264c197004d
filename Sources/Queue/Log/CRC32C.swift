import CCRC32C
import GPSModel

/// CRC32C (Castagnoli), the checksum of log batches, segment headers and snapshots.
package enum CRC32C {
  /// The checksum of `bytes`, optionally continuing from an earlier `crc`.
  package static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
    gps_crc32c_extend(crc, bytes.baseAddress, bytes.count)
  }

  package static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
    bytes.withUnsafeBytes { checksum($0, continuing: crc) }
  }

  package static func checksum(_ bytes: ArraySlice<UInt8>, continuing crc: UInt32 = 0) -> UInt32 {
    bytes.withUnsafeBytes { checksum($0, continuing: crc) }
  }
}
