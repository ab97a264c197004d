import GPSModel
import Queue
import Testing

@Suite struct CRC32CTests {
  @Test func matchesTheStandardCheckValues() {
    // RFC 3720 / iSCSI test vectors and the common "123456789" check value.
    #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
    #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
    #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
    #expect(CRC32C.checksum([UInt8]()) == 0)
  }

  @Test func continuingEqualsOneShotAtEverySplit() {
    let bytes = (0..<100).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
    let whole = CRC32C.checksum(bytes)
    for split in 0...bytes.count {
      let first = CRC32C.checksum(bytes[..<split])
      #expect(CRC32C.checksum(bytes[split...], continuing: first) == whole)
    }
  }
}
