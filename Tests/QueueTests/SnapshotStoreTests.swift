import Foundation
import GPSModel
import GPSTestSupport
import Queue
import Testing

@Suite struct SnapshotStoreTests {
  @Test func loadsTheNewestSnapshotThatMatchesTheLogAndKeepsTwo() async throws {
    try await withTemporaryDirectory { directory in
      let log = try EventLog(directory: directory.path)
      let store = SnapshotStore(directory: directory.path)
      var written: [Snapshot] = []
      for index in 0..<3 {
        _ = try await log.append([Array("event \(index)".utf8)])
        let snapshot = Snapshot(
          lastSequence: log.lastSequence, batchHash: log.lastBatchHash, payload: Array("state \(index)".utf8))
        try store.write(snapshot)
        written.append(snapshot)
      }
      log.close()
      let reader = LogReader(directory: directory.path)
      let loaded = try store.loadNewest(matching: reader)
      #expect(loaded.snapshot == written[2])
      #expect(loaded.skipped.isEmpty)
      let files = try FileManager.default.contentsOfDirectory(atPath: directory.path + "/snapshots").sorted()
      #expect(files == ["00000000000000000002.snap", "00000000000000000003.snap"])

      // A damaged newest snapshot is skipped in favour of the older one.
      let newest = URL(fileURLWithPath: directory.path + "/snapshots/00000000000000000003.snap")
      var bytes = try Data(contentsOf: newest)
      bytes[bytes.count - 1] ^= 1
      try bytes.writeInPlace(to: newest)
      let fallback = try store.loadNewest(matching: reader)
      #expect(fallback.snapshot == written[1])
      #expect(fallback.skipped.first?.contains("damaged") == true)
    }
  }

  @Test func aSnapshotOfAnotherLogIsIgnored() async throws {
    try await withTemporaryDirectory { directory in
      let log = try EventLog(directory: directory.path)
      _ = try await log.append([[1]])
      let store = SnapshotStore(directory: directory.path)
      try store.write(Snapshot(lastSequence: 1, batchHash: Array(repeating: 9, count: 32), payload: [42]))
      log.close()
      let loaded = try store.loadNewest(matching: LogReader(directory: directory.path))
      #expect(loaded.snapshot == nil)
      #expect(loaded.skipped.first?.contains("does not match the log") == true)
    }
  }
}
