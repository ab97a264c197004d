import Foundation
import GPSModel
import GPSTestSupport
import Queue
import SwiftProtobuf
import Testing

@Suite struct LogIndexTests {
  /// A log of `total` records in batches of 1–20 (a fixed pattern), over segments of `segmentSize` bytes.
  func writeLog(_ directory: URL, total: UInt64, segmentSize: Int, payload: (UInt64) -> [UInt8]) async throws {
    var options = LogOptions()
    options.segmentSize = segmentSize
    options.fsync = .none
    options.compressionThreshold = 256
    let log = try EventLog(directory: directory.path, options: options)
    var sequence: UInt64 = 1
    while sequence <= total {
      let count = min(total - sequence + 1, sequence * 7919 % 20 + 1)
      try await log.append((sequence..<(sequence + count)).map(payload))
      sequence += count
    }
    log.close()
  }

  @Test func aCursorFromTheIndexReadsTheSameRecordsAsAReadFromTheStart() async throws {
    try await withTemporaryDirectory { directory in
      try await writeLog(directory, total: 3000, segmentSize: 16 * 1024, payload: LogReaderTests.payload)
      let reader = LogReader(directory: directory.path)
      var all: [LogRecord] = []
      try reader.read { all.append($0) }
      #expect(all.count == 3000)
      let index = LogIndex(directory: directory.path, spacing: 512)
      for start in [1, 2, 17, 499, 1500, 2999, 3000, 3001] + (0..<40).map({ $0 * 7919 % 3000 + 1 }) {
        var cursor = try index.cursor(at: UInt64(start))
        var read: [LogRecord] = []
        // Small windows, and a stop after a few records then a continuation, see the same records.
        try reader.read(&cursor, window: start * 104_729 % 16_384 + 1) { record in
          guard read.count < 7 else { return false }
          read.append(record)
          return true
        }
        try reader.read(&cursor, window: 1 << 20) { record in
          read.append(record)
          return true
        }
        #expect(read == Array(all.dropFirst(start - 1)), "from \(start)")
      }
    }
  }

  @Test func theIndexFollowsAGrowingLastSegmentAndBatchesLargerThanTheWindow() async throws {
    try await withTemporaryDirectory { directory in
      // Records of 10–70 KB: every batch is larger than the smallest window a read uses.
      let big = { (sequence: UInt64) in [UInt8](repeating: UInt8(sequence % 251), count: 10_000 * Int(sequence % 7 + 1))
      }
      var options = LogOptions()
      options.fsync = .none
      options.compressionThreshold = .max
      let log = try EventLog(directory: directory.path, options: options)
      let index = LogIndex(directory: directory.path, spacing: 1024)
      let reader = LogReader(directory: directory.path)
      for sequence in UInt64(1)...60 {
        try await log.append([big(sequence)])
        // The index learned the segment as it was; it extends over what was appended since.
        var cursor = try index.cursor(at: sequence)
        var read: [UInt64] = []
        try reader.read(&cursor, window: 1) { record in
          #expect(record.payload == big(record.sequence))
          read.append(record.sequence)
          return true
        }
        #expect(read == [sequence])
      }
      log.close()
    }
  }

  @Test func aRecordOfAnotherRunIsToldApartWithoutDecoding() throws {
    let mine = RunID()
    let other = RunID()
    for id in [mine, other] {
      for time in [Int64(0), 1, 1_780_000_000_000_000] {
        let event = RunEvent.with {
          $0.timeMicros = time
          $0.runID = Data(id.bytes)
          $0.runEvent = 3
          $0.started = .init()
        }
        let record = LogRecord(sequence: 1, payload: try event.serializedBytes())
        #expect(record.mayBelong(toRun: mine.bytes) == (id == mine), "time \(time)")
      }
    }
    // A note of the log (no run): decoded to be sure, never skipped unread as someone else's.
    let note = RunEvent.with { $0.timeMicros = 5 }
    #expect(LogRecord(sequence: 1, payload: try note.serializedBytes()).mayBelong(toRun: mine.bytes))
  }
}
