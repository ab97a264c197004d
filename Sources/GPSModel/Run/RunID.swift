public import Foundation

/// A run's identity: a UUID, stored as its 16 bytes in events and printed in the usual form.
public struct RunID: Sendable, Hashable, Comparable, CustomStringConvertible {
  public let uuid: UUID

  public init(_ uuid: UUID = RunID.randomUUID()) { self.uuid = uuid }

  /// A random (version 4) UUID from the system's generator (`getrandom`). Foundation's `UUID()`
  /// opens, reads and closes /dev/urandom each time here: three system calls per enqueue.
  public static func randomUUID() -> UUID {
    var generator = SystemRandomNumberGenerator()
    var value: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    withUnsafeMutableBytes(of: &value) { raw in
      raw.storeBytes(of: generator.next() as UInt64, toByteOffset: 0, as: UInt64.self)
      raw.storeBytes(of: generator.next() as UInt64, toByteOffset: 8, as: UInt64.self)
      raw[6] = (raw[6] & 0x0F) | 0x40  // version 4
      raw[8] = (raw[8] & 0x3F) | 0x80  // RFC 4122 variant
    }
    return UUID(uuid: value)
  }

  /// Parses the usual textual form (`0e9f…-…`), case-insensitively.
  public init?(_ text: String) {
    guard let uuid = UUID(uuidString: text) else { return nil }
    self.uuid = uuid
  }

  /// From the 16 bytes stored in events; nil when there are not exactly 16.
  public init?(bytes: some Collection<UInt8>) {
    guard bytes.count == 16 else { return nil }
    var value: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    withUnsafeMutableBytes(of: &value) { raw in
      // One copy when the bytes are contiguous (an event's Data, an array): iterating Data byte
      // by byte was 8% of a replay.
      let copied: Void? = bytes.withContiguousStorageIfAvailable { raw.copyMemory(from: UnsafeRawBufferPointer($0)) }
      if copied == nil {
        for (offset, byte) in bytes.enumerated() { raw[offset] = byte }
      }
    }
    uuid = UUID(uuid: value)
  }

  public var bytes: [UInt8] {
    withUnsafeBytes(of: uuid.uuid) { Array($0) }
  }

  public var description: String { uuid.uuidString.lowercased() }

  /// Two words rather than sixteen bytes: run ids are hashed for every event and every lookup.
  public func hash(into hasher: inout Hasher) {
    withUnsafeBytes(of: uuid.uuid) { raw in
      hasher.combine(raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
      hasher.combine(raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
    }
  }

  public static func == (lhs: RunID, rhs: RunID) -> Bool {
    withUnsafeBytes(of: lhs.uuid.uuid) { l in
      withUnsafeBytes(of: rhs.uuid.uuid) { r in
        l.loadUnaligned(fromByteOffset: 0, as: UInt64.self) == r.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
          && l.loadUnaligned(fromByteOffset: 8, as: UInt64.self) == r.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
      }
    }
  }

  public static func < (lhs: RunID, rhs: RunID) -> Bool {
    withUnsafeBytes(of: lhs.uuid.uuid) { l in
      withUnsafeBytes(of: rhs.uuid.uuid) { r in l.lexicographicallyPrecedes(r) }
    }
  }
}
