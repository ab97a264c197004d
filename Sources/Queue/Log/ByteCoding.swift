import GPSModel

/// Little-endian fixed-width integers in byte arrays: the log's on-disk encoding.
extension Array where Element == UInt8 {
  @inlinable mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
    Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
  }

  @inlinable package mutating func storeLittleEndian<T: FixedWidthInteger>(_ value: T, at offset: Int) {
    Swift.withUnsafeBytes(of: value.littleEndian) { source in
      for index in 0..<source.count { self[offset + index] = source[index] }
    }
  }
}

extension UnsafeRawBufferPointer {
  @inlinable func loadLittleEndian<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
    T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
  }
}
