public import Foundation

/// A run's identity: a UUID, stored as its 16 bytes in events and printed in the usual form.
public struct RunID: Sendable, Hashable, Comparable, CustomStringConvertible {
  public let uuid: UUID

  public init(_ uuid: UUID = UUID()) { self.uuid = uuid }

  /// Parses the usual textual form (`0e9f…-…`), case-insensitively.
  public init?(_ text: String) {
    guard let uuid = UUID(uuidString: text) else { return nil }
    self.uuid = uuid
  }

  /// From the 16 bytes stored in events; nil when there are not exactly 16.
  public init?(bytes: some Collection<UInt8>) {
    guard bytes.count == 16 else { return nil }
    let b = Array(bytes)
    uuid = UUID(
      uuid: (b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]))
  }

  public var bytes: [UInt8] {
    withUnsafeBytes(of: uuid.uuid) { Array($0) }
  }

  public var description: String { uuid.uuidString.lowercased() }

  public static func < (lhs: RunID, rhs: RunID) -> Bool {
    withUnsafeBytes(of: lhs.uuid.uuid) { l in
      withUnsafeBytes(of: rhs.uuid.uuid) { r in l.lexicographicallyPrecedes(r) }
    }
  }
}
