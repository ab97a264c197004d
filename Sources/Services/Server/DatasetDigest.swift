import Crypto
import RPC

/// The digest that identifies a dataset's content independently of object order and URLs:
/// SHA-256 over the objects' SHA-256 digests, sorted, each as 32 raw bytes.
package enum DatasetDigest {
  /// Returns the lowercase hex digest, or nil when an object digest is not 64 lowercase hex characters.
  package static func compute(objectDigests: [String]) -> String? {
    var raw: [[UInt8]] = []
    raw.reserveCapacity(objectDigests.count)
    for digest in objectDigests {
      guard let bytes = decodeHex(digest), bytes.count == SHA256.byteCount else { return nil }
      raw.append(bytes)
    }
    raw.sort { $0.lexicographicallyPrecedes($1) }
    var hasher = SHA256()
    for bytes in raw { hasher.update(data: bytes) }
    return hasher.finalize().hexString
  }

  /// Decodes lowercase hex; nil for odd lengths or any other character.
  static func decodeHex(_ hex: String) -> [UInt8]? {
    let utf8 = Array(hex.utf8)
    guard utf8.count.isMultiple(of: 2) else { return nil }
    func value(_ c: UInt8) -> UInt8? {
      switch c {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
      case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
      default: nil
      }
    }
    var out: [UInt8] = []
    out.reserveCapacity(utf8.count / 2)
    var index = 0
    while index < utf8.count {
      guard let high = value(utf8[index]), let low = value(utf8[index + 1]) else { return nil }
      out.append(high << 4 | low)
      index += 2
    }
    return out
  }
}
