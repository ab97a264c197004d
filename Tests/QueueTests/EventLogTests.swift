import Foundation
import GPSModel
import GPSTestSupport
import Queue
import Testing

/// Random payloads: half compressible text-like bytes, half random.
func payload(size: Int, compressible: Bool, seed: inout SplitMix) -> [UInt8] {
  if compressible { return (0..<size).map { UInt8(truncatingIfNeeded: ($0 / 7) % 26 + 97) } }
  return (0..<size).map { _ in UInt8(truncatingIfNeeded: seed.next()) }
}

func readAll(_ directory: String) throws -> [LogRecord] {
  var records: [LogRecord] = []
  try LogReader(directory: directory).read { records.append($0) }
  return records
}

func segmentFiles(_ directory: String) throws -> [String] {
  try FileManager.default.contentsOfDirectory(atPath: directory + "/log").filter { $0.hasSuffix(".seg") }.sorted()
}

@Suite struct EventLogTests {
  @Test func roundTripsRandomBatchesAcrossSegmentRollsAndReopens() async throws {
    try await withTemporaryDirectory { directory in
      var options = LogOptions()
      options.segmentSize = 512 * 1024
      // However the appends happen to group, frames stay below a segment's size, so segments roll.
      options.maxBatchBytes = 256 * 1024
      var seed = SplitMix(state: 42)
      var expected: [UInt64: [UInt8]] = [:]
      for round in 0..<3 {
        let log = try EventLog(directory: directory.path, options: options)
        var batches: [[[UInt8]]] = []
        for index in 0..<12 {
          let size = [0, 1, 200, 5000, 70_000, 1 << 20][index % 6]
          let count = 1 + Int(seed.next() % 3)
          batches.append((0..<count).map { _ in payload(size: size, compressible: seed.next() % 2 == 0, seed: &seed) })
        }
        // Concurrent appenders: each learns its own sequences.
        let results = try await withThrowingTaskGroup(of: (ClosedRange<UInt64>, [[UInt8]]).self) { group in
          for batch in batches { group.addTask { (try await log.append(batch), batch) } }
          return try await group.reduce(into: []) { $0.append($1) }
        }
        for (range, batch) in results {
          #expect(range.count == batch.count)
          for (sequence, record) in zip(range, batch) { expected[sequence] = record }
        }
        log.close()
        let records = try readAll(directory.path)
        #expect(records.map(\.sequence) == Array(1...UInt64(expected.count)), "round \(round)")
        #expect(records.allSatisfy { expected[$0.sequence] == $0.payload })
      }
      #expect(try segmentFiles(directory.path).count > 3)
      let report = try LogVerifier(directory: directory.path).verify()
      #expect(report.isIntact, "\(report.problem ?? "")")
      #expect(report.records == UInt64(expected.count))
    }
  }

  @Test func truncatingTheLastBatchAtEveryOffsetRecoversTheEarlierBatches() async throws {
    try await withTemporaryDirectory { directory in
      let log = try EventLog(directory: directory.path)
      for index in 0..<5 { _ = try await log.append([Array("event \(index)".utf8), Array("second \(index)".utf8)]) }
      let segment = directory.path + "/log/" + (try segmentFiles(directory.path)[0])
      let before = try Data(contentsOf: URL(fileURLWithPath: segment)).count
      _ = try await log.append([Array(repeating: 7, count: 300)])
      log.close()
      let full = try Data(contentsOf: URL(fileURLWithPath: segment))
      for cut in before..<full.count {
        try full.prefix(cut).writeInPlace(to: URL(fileURLWithPath: segment))
        let reopened = try EventLog(directory: directory.path)
        #expect(reopened.lastSequence == 10, "cut at \(cut)")
        #expect(reopened.recovery.truncatedBytes == cut - before)
        #expect(reopened.recovery.isClean == (cut == before))
        if cut > before { #expect(reopened.recovery.droppedFromSequence == 11) }
        reopened.close()
        #expect(try readAll(directory.path).count == 10)
      }
      // After recovery the log continues and the chain still verifies.
      let log2 = try EventLog(directory: directory.path)
      #expect(try await log2.append([[1, 2, 3]]) == 11...11)
      log2.close()
      #expect(try LogVerifier(directory: directory.path).verify().isIntact)
    }
  }

  @Test func zerosAtTheEndAreATornTailButDamageInASealedSegmentIsCorruption() async throws {
    try await withTemporaryDirectory { directory in
      var options = LogOptions()
      options.segmentSize = 4096
      let log = try EventLog(directory: directory.path, options: options)
      for index in 0..<40 { _ = try await log.append([Array(repeating: UInt8(index), count: 500)]) }
      log.close()
      let segments = try segmentFiles(directory.path)
      #expect(segments.count > 3)
      // Zeros appended to the last segment (a preallocated or torn write) are cut off.
      let last = URL(fileURLWithPath: directory.path + "/log/" + segments.last!)
      let handle = try FileHandle(forWritingTo: last)
      try handle.seekToEnd()
      try handle.write(contentsOf: Data(count: 1000))
      try handle.close()
      let reopened = try EventLog(directory: directory.path)
      #expect(reopened.recovery.truncatedBytes == 1000)
      #expect(reopened.lastSequence == 40)
      reopened.close()

      // Single bit flips anywhere in a sealed segment: open refuses and names the segment.
      let sealedName = segments[1]
      let sealed = URL(fileURLWithPath: directory.path + "/log/" + sealedName)
      let original = try Data(contentsOf: sealed)
      var seed = SplitMix(state: 7)
      for _ in 0..<40 {
        let position = Int(seed.next() % UInt64(original.count))
        var flipped = original
        flipped[position] ^= UInt8(1) << (seed.next() % 8)
        try flipped.writeInPlace(to: sealed)
        let error = #expect(throws: QueueError.self) { try EventLog(directory: directory.path) }
        #expect(error?.code == .corrupt, "flip at \(position)")
        #expect(error?.message.contains(sealedName) == true)
        let report = try LogVerifier(directory: directory.path).verify()
        #expect(report.problem?.contains(sealedName) == true, "flip at \(position)")
        // The batch named is the one holding the flipped byte.
        if position >= LogFormat.segmentHeaderSize {
          let batchOffset = try batchStart(containing: position, in: original)
          #expect(report.problem?.contains("byte offset \(batchOffset),") == true, "\(report.problem ?? "")")
        }
      }
      try original.writeInPlace(to: sealed)
      #expect(try LogVerifier(directory: directory.path).verify().isIntact)
    }
  }

  /// Opening without scanning sealed segments (as the server does): a flip inside one does not stop
  /// the open, appending goes on with the right chain, and the quick check names the segment. A
  /// damaged header still stops it, and a last segment just begun takes its chain from the one before.
  @Test func openingWithoutScanningSealedSegmentsLeavesTheirCheckToLater() async throws {
    try await withTemporaryDirectory { directory in
      var options = LogOptions()
      options.segmentSize = 4096
      let log = try EventLog(directory: directory.path, options: options)
      for index in 0..<40 { _ = try await log.append([Array(repeating: UInt8(index), count: 500)]) }
      let full = log.lastBatch
      log.close()
      options.scanSealedSegments = false
      let fast = try EventLog(directory: directory.path, options: options)
      #expect(fast.lastBatch.sequence == full.sequence && fast.lastBatch.hash == full.hash)
      fast.close()
      // A last segment with nothing in it yet (the roll just happened).
      let segments = try segmentFiles(directory.path)
      let next = LogFormat.segmentName(firstSequence: full.sequence + 1)
      try Data(LogFormat.segmentHeader(firstSequence: full.sequence + 1)).write(
        to: URL(fileURLWithPath: directory.path + "/log/" + next))
      let rolled = try EventLog(directory: directory.path, options: options)
      #expect(rolled.lastBatch.hash == full.hash)
      #expect(try await rolled.append([[1]]) == (full.sequence + 1)...(full.sequence + 1))
      rolled.close()
      #expect(try LogVerifier(directory: directory.path).verify().isIntact)

      let sealedName = segments[1]
      let sealed = URL(fileURLWithPath: directory.path + "/log/" + sealedName)
      let original = try Data(contentsOf: sealed)
      var flipped = original
      flipped[LogFormat.segmentHeaderSize + 100] ^= 0x10
      try flipped.writeInPlace(to: sealed)
      let opened = try EventLog(directory: directory.path, options: options)
      opened.close()
      #expect(try LogVerifier(directory: directory.path).verify(thorough: false).problem?.contains(sealedName) == true)
      flipped = original
      flipped[3] ^= 0x01
      try flipped.writeInPlace(to: sealed)
      #expect(throws: QueueError.self) { try EventLog(directory: directory.path, options: options) }
      try original.writeInPlace(to: sealed)
    }
  }

  @Test func verifyFindsAnEditedPayloadWithAFixedChecksumADeletionAndASwap() async throws {
    try await withTemporaryDirectory { directory in
      let log = try EventLog(directory: directory.path)
      for index in 0..<6 { _ = try await log.append([Array("run-\(index) completed".utf8)]) }
      log.close()
      let segment = URL(fileURLWithPath: directory.path + "/log/" + (try segmentFiles(directory.path)[0]))
      let original = try Data(contentsOf: segment)
      let frames = try batchFrames(in: original)  // (offset, size)
      #expect(frames.count == 6)

      // Edit batch 2's payload and recompute its checksum: only the hash chain can tell.
      var edited = original
      let (offset2, size2) = frames[2]
      edited[offset2 + LogFormat.batchHeaderSize + 4] ^= 0x20  // a payload byte, after the record length
      let crc = CRC32C.checksum(Array(edited[(offset2 + 8)..<(offset2 + size2)]))
      withUnsafeBytes(of: crc.littleEndian) { for i in 0..<4 { edited[offset2 + 4 + i] = $0[i] } }
      try edited.writeInPlace(to: segment)
      let editReport = try LogVerifier(directory: directory.path).verify()
      #expect(editReport.problem?.contains("hash chain breaks") == true, "\(editReport.problem ?? "")")
      #expect(editReport.problem?.contains("byte offset \(frames[3].0),") == true)
      #expect(
        editReport.problem?.contains("offset \(offset2), sequences 3–3) was edited") == true,
        "\(editReport.problem ?? "")")

      // Delete batch 3.
      var deleted = original
      deleted.removeSubrange(frames[3].0..<(frames[3].0 + frames[3].1))
      try deleted.writeInPlace(to: segment)
      let deleteReport = try LogVerifier(directory: directory.path).verify()
      #expect(deleteReport.problem?.contains("sequences 4–4 are missing") == true, "\(deleteReport.problem ?? "")")
      #expect(throws: QueueError.self) { try EventLog(directory: directory.path) }

      // Swap batches 1 and 2.
      var swapped = Data(original[..<frames[1].0])
      swapped += original[frames[2].0..<(frames[2].0 + frames[2].1)]
      swapped += original[frames[1].0..<(frames[1].0 + frames[1].1)]
      swapped += original[(frames[2].0 + frames[2].1)...]
      try swapped.writeInPlace(to: segment)
      let swapReport = try LogVerifier(directory: directory.path).verify()
      #expect(swapReport.problem?.contains("reordered") == true, "\(swapReport.problem ?? "")")

      // Repair cuts at the first bad batch and keeps the removed bytes.
      let repair = try EventLog.repair(directory: directory.path)
      #expect(repair.offset == frames[1].0)
      #expect(repair.lastSequence == 1)
      let side = try Data(contentsOf: URL(fileURLWithPath: repair.sideFiles[0]))
      #expect(side == swapped[frames[1].0...])
      #expect(try LogVerifier(directory: directory.path).verify().isIntact)
      #expect(try readAll(directory.path).count == 1)
    }
  }

  @Test(arguments: [("fsync", EIO), ("write", ENOSPC)])
  func aFailedWriteOrSyncStopsTheWriterAndKeepsAcknowledgedData(call: String, code: Int32) async throws {
    try await withTemporaryDirectory { directory in
      let fileSystem = FaultyFileSystem()
      let log = try EventLog(directory: directory.path, fileSystem: fileSystem)
      let acknowledged = try await log.append([[1], [2], [3]])
      #expect(acknowledged == 1...3)
      if call == "fsync" { fileSystem.failSyncs(errno: code) } else { fileSystem.failWrites(errno: code) }
      let failure = await #expect(throws: QueueError.self) { try await log.append([[4]]) }
      #expect(failure?.code == .writerStopped)
      #expect(failure?.message.contains("errno \(code)") == true, "\(failure?.message ?? "")")
      fileSystem.heal()
      // No retry that pretends success: the writer stays stopped.
      let later = await #expect(throws: QueueError.self) { try await log.append([[5]]) }
      #expect(later?.code == .writerStopped)
      log.close()
      #expect(try readAll(directory.path).prefix(3).map(\.payload) == [[1], [2], [3]])
      // Even if the machine lost what was never synced, the acknowledged records are there.
      try fileSystem.loseUnsyncedWrites()
      let reopened = try EventLog(directory: directory.path, fileSystem: fileSystem)
      #expect(reopened.lastSequence >= 3)
      reopened.close()
      #expect(try readAll(directory.path).prefix(3).map(\.payload) == [[1], [2], [3]])
    }
  }

  @Test func everyAcknowledgedAppendSurvivesLosingUnsyncedWrites() async throws {
    try await withTemporaryDirectory { directory in
      let fileSystem = FaultyFileSystem()
      var options = LogOptions()
      options.segmentSize = 8192
      let log = try EventLog(directory: directory.path, options: options, fileSystem: fileSystem)
      let ranges = try await withThrowingTaskGroup(of: ClosedRange<UInt64>.self) { group in
        for index in 0..<64 { group.addTask { try await log.append([Array(repeating: UInt8(index), count: 300)]) } }
        return try await group.reduce(into: []) { $0.append($1) }
      }
      try fileSystem.loseUnsyncedWrites()  // the power fails before close()
      let records = try readAll(directory.path)
      #expect(records.count == 64)
      for range in ranges { #expect(records[Int(range.lowerBound) - 1].sequence == range.lowerBound) }
      log.close()
    }
  }

  @Test func aSecondWriterGetsTheLockError() async throws {
    try await withTemporaryDirectory { directory in
      let log = try EventLog(directory: directory.path)
      let error = #expect(throws: QueueError.self) { try EventLog(directory: directory.path) }
      #expect(error?.code == .locked)
      #expect(error?.message.contains(directory.path) == true)
      #expect(error?.message.contains("process \(getpid())") == true, "\(error?.message ?? "")")
      log.close()
      try EventLog(directory: directory.path).close()  // released on close
    }
  }
}

/// (offset, size) of every batch frame in a segment's bytes.
func batchFrames(in segment: Data) throws -> [(Int, Int)] {
  var frames: [(Int, Int)] = []
  var offset = LogFormat.segmentHeaderSize
  while offset + 4 <= segment.count {
    let size = segment[offset..<(offset + 4)].withUnsafeBytes {
      Int(UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)))
    }
    guard size > 0 else { break }
    frames.append((offset, size))
    offset += size
  }
  return frames
}

func batchStart(containing position: Int, in segment: Data) throws -> Int {
  try #require(batchFrames(in: segment).last { $0.0 <= position }).0
}
