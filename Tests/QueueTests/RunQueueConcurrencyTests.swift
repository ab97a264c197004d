import Foundation
import GPSModel
import GPSTestSupport
import Queue
import SwiftProtobuf
import Testing

@Suite struct RunQueueConcurrencyTests {
  @Test func sixteenConcurrentClaimersNeverClaimARunTwice() async throws {
    try await withTemporaryDirectory { directory in
      var fixture = QueueFixture(directory: directory)
      fixture.options.log.fsync = .always
      let queue = try fixture.open()
      let runs = 400
      try await withThrowingTaskGroup(of: Void.self) { group in
        for client in 0..<8 {
          group.addTask {
            for index in 0..<(runs / 8) { _ = try await queue.enqueue(request(key: "\(client)-\(index)")) }
          }
        }
        try await group.waitForAll()
      }
      let claimed = try await withThrowingTaskGroup(of: [RunID].self) { group in
        for claimer in 0..<16 {
          group.addTask {
            var mine: [RunID] = []
            while let claim = try await queue.claim(scheduler: "s\(claimer)") {
              #expect(claim.run.lease?.scheduler == "s\(claimer)")
              mine.append(claim.run.id)
            }
            return mine
          }
        }
        return try await group.reduce(into: []) { $0 += $1 }
      }
      #expect(claimed.count == runs)
      #expect(Set(claimed).count == runs)
      #expect(queue.state.counts[.pending] == runs)
      #expect(queue.state == (try fixture.replayed()))
      queue.close()
    }
  }

  @Test func aFailedWriteStopsTheQueueAndLosesNothingAcknowledged() async throws {
    try await withTemporaryDirectory { directory in
      let fileSystem = FaultyFileSystem()
      var options = QueueOptions()
      options.log.fsync = .always
      let queue = try RunQueue(
        directory: directory.path, options: options, clock: ManualClock(), fileSystem: fileSystem)
      let kept = try await queue.enqueue(request(key: "kept")).run
      fileSystem.failSyncs(errno: EIO)
      let failed = await #expect(throws: QueueError.self) { try await queue.enqueue(request(key: "lost")) }
      #expect(failed?.code == .writerStopped)
      fileSystem.heal()
      // The queue stays stopped: the state in memory may be ahead of the disk.
      let refused = await #expect(throws: QueueError.self) { try await queue.enqueue(request(key: "later")) }
      #expect(refused?.code == .writerStopped)
      queue.close()

      try fileSystem.loseUnsyncedWrites()
      let reopened = try RunQueue(directory: directory.path, options: options, clock: ManualClock())
      #expect(reopened.state.runs.count == 1)
      #expect(reopened.state.runs[kept.id]?.idempotencyKey == "kept")
      #expect(reopened.state.idempotencyKeys["lost"] == nil)
      reopened.close()
    }
  }

  @Test func aLogWithAnIllegalTransitionRefusesToOpenNamingTheEvent() async throws {
    try await withTemporaryDirectory { directory in
      // Written straight to the log, bypassing the queue: a claim of a run that does not exist.
      let log = try EventLog(directory: directory.path)
      let event = RunEvent.with {
        $0.timeMicros = 1
        $0.runID = Data(RunID().bytes)
        $0.runEvent = 1
        $0.kind = .claimed(.with { $0.scheduler = "ghost" })
      }
      _ = try await log.append([try event.serializedBytes()])
      log.close()
      let error = #expect(throws: QueueError.self) { try RunQueue(directory: directory.path) }
      #expect(error?.code == .illegalTransition)
      #expect(error?.message.contains("event 1: run ") == true)
      #expect(error?.message.contains("RunClaimed for a run that was never enqueued") == true)
    }
  }
}
