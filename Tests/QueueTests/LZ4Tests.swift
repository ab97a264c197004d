import GPSModel
import Queue
import Testing

@Suite struct LZ4Tests {
  @Test(arguments: [0, 1, 17, 4096, 1 << 20])
  func roundTripsCompressibleAndRandomData(size: Int) throws {
    var generator = SystemRandomNumberGenerator()
    let random = (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }
    let repetitive = (0..<size).map { UInt8(truncatingIfNeeded: $0 % 7) }
    for input in [random, repetitive] {
      let compressed = LZ4.compress(input)
      #expect(try LZ4.decompress(compressed, originalSize: input.count) == input)
    }
    if size >= 4096 {
      #expect(LZ4.compress(repetitive).count < size / 10)
    }
  }

  @Test func rejectsACorruptBlockOrAWrongSize() throws {
    let input = Array(repeating: UInt8(ascii: "x"), count: 10_000)
    let compressed = LZ4.compress(input)
    #expect(throws: QueueError.self) { try LZ4.decompress(compressed, originalSize: input.count - 1) }
    #expect(throws: QueueError.self) { try LZ4.decompress(Array(compressed.prefix(3)), originalSize: input.count) }
    let error = #expect(throws: QueueError.self) { try LZ4.decompress([1, 2, 3], originalSize: 0) }
    #expect(error?.code == .corrupt)
  }
}
