import Foundation
import GPSModel
import GPSTestSupport
import Queue
import Testing

/// Damage a hostile user did to the data directory: deleted segments, garbage at the end, leftovers.
/// Each must be refused or reported, never accepted without a word.
@Suite struct StorageDamageTests {
  /// A queue of `runs` runs over small segments, closed with a snapshot of the whole log.
  func makeQueue(_ path: String, runs: Int = 40) async throws {
    let queue = try RunQueue(directory: path, options: Self.smallSegments)
    for index in 0..<runs {
      _ = try await queue.enqueue(
        EnqueueRequest(deployment: "d/x", flow: "d", parametersJSON: #"{"n":\#(index)}"#))
    }
    queue.close()
  }

  static var smallSegments: QueueOptions {
    var options = QueueOptions()
    options.log.segmentSize = 1024
    return options
  }

  func segments(_ path: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: path + "/log").filter { $0.hasSuffix(".seg") }.sorted()
  }

  func events(_ path: String) throws -> [RunEvent] {
    var events: [RunEvent] = []
    try QueueHistory(directory: path).events { _, event in
      events.append(event)
      return true
    }
    return events
  }

  func dataLost(_ body: () throws -> Void) -> QueueError? {
    do {
      try body()
      return nil
    } catch let error as QueueError {
      return error
    } catch {
      return nil
    }
  }

  @Test func theLastSegmentDeletedUnderASnapshotRefusesToOpenUntilTheLossIsAccepted() async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      try await makeQueue(path)
      let names = try segments(path)
      #expect(names.count > 2)
      let last = names.last!
      let lastFirst = UInt64(last.prefix(20))!
      try FileManager.default.removeItem(atPath: path + "/log/" + last)

      // The server refuses, naming the sequences; so do the offline reader and verify.
      let opened = dataLost { _ = try RunQueue(directory: path) }
      #expect(opened?.code == .dataLost)
      #expect(opened?.missing?.lowerBound == lastFirst)
      #expect(opened?.message.contains("sequences \(lastFirst)–") == true, "\(opened?.message ?? "")")
      let read = dataLost { _ = try QueueHistory(directory: path).state(at: .sequence(.max)) }
      #expect(read?.code == .dataLost)
      let verify = try LogVerifier(directory: path).verify()
      #expect(verify.missing?.lowerBound == lastFirst)
      #expect(verify.problem?.contains("are missing") == true)

      // Accepting the loss moves the snapshot aside and records the loss in the log.
      let acceptance = try RunQueue.acceptLoss(directory: path, acceptedBy: "tester@host")
      #expect(acceptance.losses.count == 1)
      #expect(acceptance.losses.first?.missing.lowerBound == lastFirst)
      #expect(acceptance.losses.first?.setAside.first?.hasPrefix("snapshots/lost/") == true)
      let queue = try RunQueue(directory: path)
      let note = try events(path).last
      guard case .logLossAccepted(let accepted) = note?.kind else {
        Issue.record("the last event is \(String(describing: note?.typeName))")
        return
      }
      #expect(accepted.firstMissing == lastFirst)
      #expect(accepted.acceptedBy == "tester@host")
      _ = try await queue.enqueue(EnqueueRequest(deployment: "d/x", flow: "d"))
      queue.close()
      #expect(try LogVerifier(directory: path).verify().isIntact)
      // Accepting again finds nothing to accept.
      #expect(try RunQueue.acceptLoss(directory: path, acceptedBy: "tester@host").losses.isEmpty)
    }
  }

  @Test func theFirstSegmentDeletedRefusesToOpenAndAnAcceptedLossIsAnchored() async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      try await makeQueue(path)
      let before = try RunQueue(directory: path)
      let runs = before.counts.total
      before.close()
      let first = try segments(path)[0]
      let second = try segments(path)[1]
      let secondFirst = UInt64(second.prefix(20))!
      try FileManager.default.removeItem(atPath: path + "/log/" + first)

      let opened = dataLost { _ = try RunQueue(directory: path) }
      #expect(opened?.code == .dataLost)
      #expect(opened?.missing == 1...(secondFirst - 1))
      let read = dataLost { _ = try QueueHistory(directory: path).state(at: .sequence(.max)) }
      #expect(read?.code == .dataLost)
      #expect(try LogVerifier(directory: path).verify().missing == 1...(secondFirst - 1))

      // The snapshot of the whole log covers the lost sequences: the loss can be accepted.
      let acceptance = try RunQueue.acceptLoss(directory: path, acceptedBy: "tester@host")
      #expect(acceptance.anchor?.firstSequence == secondFirst)
      let queue = try RunQueue(directory: path)
      #expect(queue.counts.total == runs)
      _ = try await queue.enqueue(EnqueueRequest(deployment: "d/x", flow: "d"))
      queue.close()
      let verified = try LogVerifier(directory: path).verify()
      #expect(verified.isIntact, "\(verified.problem ?? "")")
      #expect(verified.anchor?.firstSequence == secondFirst)
    }
  }

  @Test func aLostHeadWithoutASnapshotCannotBeAccepted() async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      try await makeQueue(path)
      try FileManager.default.removeItem(atPath: path + "/snapshots")
      try FileManager.default.removeItem(atPath: path + "/log/" + (try segments(path)[0]))
      let refused = dataLost { _ = try RunQueue.acceptLoss(directory: path, acceptedBy: "tester@host") }
      #expect(refused?.code == .dataLost)
      #expect(refused?.message.contains("no snapshot covers them") == true, "\(refused?.message ?? "")")
      #expect(!FileManager.default.fileExists(atPath: path + "/log/ANCHOR"))
    }
  }

  @Test(arguments: [UInt8(0), UInt8(0xA7)])
  func garbageAtTheEndIsCutReportedAndRecordedInTheLog(byte: UInt8) async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      try await makeQueue(path, runs: 3)
      let last = path + "/log/" + (try segments(path)).last!
      let size = try FileManager.default.attributesOfItem(atPath: last)[.size] as! Int
      let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: last))
      try handle.seekToEnd()
      try handle.write(contentsOf: Data(repeating: byte, count: 5000))
      try handle.close()

      let queue = try RunQueue(directory: path)
      let recovery = queue.startup.recovery
      #expect(recovery.truncatedBytes == 5000)
      #expect(recovery.summary.contains("cut bytes \(size)–\(size + 5000)"), "\(recovery.summary)")
      #expect(recovery.summary.contains((try segments(path)).last!))
      #expect(recovery.summary.contains("sequences from 4"), "\(recovery.summary)")
      queue.close()
      let note = try events(path).last
      guard case .logTailTruncated(let truncated) = note?.kind else {
        Issue.record("the last event is \(String(describing: note?.typeName))")
        return
      }
      #expect(truncated.fromOffset == UInt64(size))
      #expect(truncated.toOffset == UInt64(size + 5000))
      #expect(RecoveryReport(note: truncated).summary == recovery.summary)
      #expect(try LogVerifier(directory: path).verify().isIntact)
    }
  }

  @Test func aTornBatchNamesTheSequencesItHeld() async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      let log = try EventLog(directory: path)
      _ = try await log.append([[1], [2]])
      _ = try await log.append([[3], [4], [5]])
      log.close()
      let segment = path + "/log/" + (try segments(path))[0]
      let size = try FileManager.default.attributesOfItem(atPath: segment)[.size] as! Int
      try FileHandle(forWritingTo: URL(fileURLWithPath: segment)).truncate(atOffset: UInt64(size - 3))
      let reopened = try EventLog(directory: path)
      #expect(reopened.recovery.droppedFromSequence == 3)
      #expect(reopened.recovery.droppedToSequence == 5)
      #expect(reopened.recovery.summary.contains("sequences 3–5"), "\(reopened.recovery.summary)")
      reopened.close()
    }
  }

  @Test func leftoverSnapshotTempFilesAreRemovedOnOpen() async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      try await makeQueue(path, runs: 2)
      try directory.writeFile("snapshots/00000000000000000099.snap.tmp", Data())
      let queue = try RunQueue(directory: path)
      queue.close()
      let files = try FileManager.default.contentsOfDirectory(atPath: path + "/snapshots")
      #expect(!files.contains { $0.hasSuffix(".tmp") }, "\(files)")
    }
  }

  @Test func repairSaysHowManyBatchesAndEventsItMoved() async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      try await makeQueue(path)
      let names = try segments(path)
      // A flipped byte in the second segment's first batch body.
      let damaged = URL(fileURLWithPath: path + "/log/" + names[1])
      var bytes = try Data(contentsOf: damaged)
      bytes[LogFormat.segmentHeaderSize + 70] ^= 0xFF
      try bytes.writeInPlace(to: damaged)
      let before = try LogVerifier(directory: path).verify()
      #expect(!before.isIntact)
      let report = try EventLog.repair(directory: path)
      #expect(report.segment == names[1])
      #expect(report.sideFiles.count == names.count - 1)
      // The damaged batch no longer reads; the intact later batches are counted.
      #expect(report.removedRecords > 0)
      // 40 events were written; the damaged batch's are not among the readable ones.
      #expect(report.removedRecords < 40 - report.lastSequence)
      #expect(report.removedBatches > 0)
    }
  }
}
