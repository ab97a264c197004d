import Foundation
import GPSModel
import GPSTestSupport
import Queue
import SwiftProtobuf
import Testing

@Suite struct RunIDTests {
  @Test func newIDsAreVersionFourUUIDsThatDifferAndSurviveTheirTextAndBytes() throws {
    let ids = (0..<1000).map { _ in RunID() }
    #expect(Set(ids).count == ids.count)
    for id in ids.prefix(50) {
      let bytes = id.bytes
      #expect(bytes[6] >> 4 == 4, "version nibble of \(id)")
      #expect(bytes[8] >> 6 == 0b10, "variant bits of \(id)")
      #expect(Array(id.description)[14] == "4")
      #expect(RunID(id.description) == id)
      #expect(RunID(bytes: bytes) == id)
    }
    // Random bits: across 1,000 ids every one of the 122 free bits takes both values.
    var ones = [Int](repeating: 0, count: 128)
    for id in ids {
      for (index, byte) in id.bytes.enumerated() {
        for bit in 0..<8 where byte & (1 << bit) != 0 { ones[index * 8 + bit] += 1 }
      }
    }
    let fixed: Set<Int> = [52, 53, 54, 55, 70, 71]  // version (byte 6, high nibble) and variant (byte 8, top two)
    for bit in 0..<128 where !fixed.contains(bit) {
      #expect(ones[bit] > 300 && ones[bit] < 700, "bit \(bit) was set \(ones[bit]) times in 1,000")
    }
  }
}
