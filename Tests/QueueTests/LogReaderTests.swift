import Foundation
import GPSModel
import GPSTestSupport
import Queue
import Testing

@Suite struct LogReaderTests {
  static func payload(_ sequence: UInt64) -> [UInt8] {
    Array("record \(sequence) ".utf8) + Array(repeating: 1, count: Int(sequence % 50))
  }

  /// Readers run beside the writer without the lock and only ever see whole batches, in order.
  @Test func concurrentReadersSeeAGrowingPrefixOfCompleteBatches() async throws {
    try await withTemporaryDirectory { directory in
      var options = LogOptions()
      options.segmentSize = 16 * 1024
      options.fsync = .none
      let log = try EventLog(directory: directory.path, options: options)
      let total: UInt64 = 3000
      try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
          var sequence: UInt64 = 1
          while sequence <= total {
            let count = min(total - sequence + 1, UInt64.random(in: 1...20))
            let range = try await log.append((sequence..<(sequence + count)).map(Self.payload))
            #expect(range == sequence...(sequence + count - 1))
            sequence += count
          }
        }
        group.addTask {
          let reader = LogReader(directory: directory.path)
          var cursor = LogCursor()
          var seen: UInt64 = 0
          while seen < total {
            try reader.read(&cursor) { record in
              #expect(record.sequence == seen + 1)
              #expect(record.payload == Self.payload(record.sequence))
              seen = record.sequence
            }
            await Task.yield()
          }
          // A fresh reader from the start agrees.
          #expect(try reader.read { _ in } == total + 1)
        }
        try await group.waitForAll()
      }
      log.close()
    }
  }

  @Test func followDeliversExistingThenNewRecordsAcrossSegmentRolls() async throws {
    try await withTemporaryDirectory { directory in
      var options = LogOptions()
      options.segmentSize = 4096
      let log = try EventLog(directory: directory.path, options: options)
      for sequence in UInt64(1)...10 { _ = try await log.append([Self.payload(sequence)]) }
      let (appended, appendedContinuation) = AsyncStream.makeStream(of: Void.self)
      try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
          var received: [UInt64] = []
          try await LogReader(directory: directory.path).follow(from: 5, pollInterval: .milliseconds(1)) { record in
            #expect(record.payload == Self.payload(record.sequence))
            received.append(record.sequence)
            if record.sequence == 10 { appendedContinuation.yield() }  // caught up: let the writer go on
            return record.sequence < 200
          }
          #expect(received == Array(5...200))
        }
        group.addTask {
          for await _ in appended { break }
          for sequence in UInt64(11)...200 { _ = try await log.append([Self.payload(sequence)]) }
        }
        try await group.waitForAll()
      }
      log.close()
      #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path + "/log").count > 3)
    }
  }

  @Test func intervalPolicyDataIsSyncedByAClose() async throws {
    try await withTemporaryDirectory { directory in
      let fileSystem = FaultyFileSystem()
      var options = LogOptions()
      options.fsync = .interval(.seconds(3600))
      let log = try EventLog(directory: directory.path, options: options, fileSystem: fileSystem)
      _ = try await log.append([[1]])
      _ = try await log.append([[2]])
      log.close()  // a clean close syncs what the interval had not yet
      try fileSystem.loseUnsyncedWrites()
      var records: [LogRecord] = []
      try LogReader(directory: directory.path).read { records.append($0) }
      #expect(records.map(\.payload) == [[1], [2]])
    }
  }
}
