import Foundation
import GPSModel
import GPSTestSupport
import Queue
import SwiftProtobuf
import Testing

/// A snapshot of the queue's state and the log after it give what a replay of the whole log gives.
@Suite struct SnapshotReplayTests {
  @Test func aSnapshotPayloadRoundTripsInChunksAndDamageIsRefused() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory)
      let queue = try fixture.open()
      for index in 0..<25 {
        _ = try await queue.enqueue(
          request(key: index % 2 == 0 ? "key-\(index)" : "", tags: index % 3 == 0 ? ["t"] : []))
        if index % 4 == 0, let claim = try await queue.claim(scheduler: "s") {
          try await queue.report(claim.token, .started(.init()))
        }
      }
      let state = queue.state
      queue.close()
      for chunk in [1, 4, 25, 100] {
        let payload = state.snapshotPayload(runsPerChunk: chunk)
        #expect(QueueState(snapshotPayload: payload) == state, "chunks of \(chunk)")
        for cut in stride(from: 0, to: payload.count, by: 97) {
          #expect(QueueState(snapshotPayload: Array(payload.prefix(cut))) == nil, "cut at \(cut)")
        }
      }
      #expect(QueueState(snapshotPayload: QueueState().snapshotPayload()) == QueueState())
    }
  }

  @Test func snapshotPlusTailEqualsAFullReplayAndDeletingSnapshotsChangesNothing() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory) { $0.snapshotEvery = 10 }
      let queue = try fixture.open()
      for index in 0..<40 {
        let run = try await queue.enqueue(request(tags: index % 3 == 0 ? ["t"] : [])).run
        if index % 2 == 0, let claim = try await queue.claim(scheduler: "s") {
          try await queue.report(claim.token, .started(.init()))
          if index % 4 == 0 {
            try await queue.report(claim.token, .completed(.with { $0.result = Data(run.id.bytes) }))
          }
        }
      }
      let live = queue.state
      // As after a crash: no snapshot at close, only the periodic ones (when the last was written
      // depends on timing: snapshots are taken when the previous one is done).
      queue.close(writingSnapshot: false)
      let periodic = try fixture.open()
      let snapshotSequence = try #require(periodic.startup.snapshotSequence)
      #expect(snapshotSequence <= live.lastSequence)
      #expect(periodic.startup.replayedEvents == live.lastSequence - snapshotSequence)
      #expect(periodic.state == live)
      periodic.close()

      // The snapshot written at a clean close covers everything.
      let fromSnapshot = try fixture.open()
      #expect(fromSnapshot.startup.snapshotSequence == live.lastSequence)
      #expect(fromSnapshot.startup.replayedEvents == 0)
      #expect(fromSnapshot.state == live)
      // A tail after it, and a crash.
      _ = try await fromSnapshot.enqueue(request())
      let claim = try #require(try await fromSnapshot.claim(scheduler: "s"))
      try await fromSnapshot.report(claim.token, .started(.init()))
      let withTail = fromSnapshot.state
      fromSnapshot.close(writingSnapshot: false)
      let tail = try fixture.open()
      #expect(tail.startup.snapshotSequence == live.lastSequence)
      #expect(tail.startup.replayedEvents == 3)
      #expect(tail.state == withTail)
      tail.close(writingSnapshot: false)

      try FileManager.default.removeItem(atPath: fixture.directory + "/snapshots")
      let fromLog = try fixture.open()
      #expect(fromLog.startup.snapshotSequence == nil)
      #expect(fromLog.startup.replayedEvents == withTail.lastSequence)
      #expect(fromLog.state == withTail)
      fromLog.close()
    }
  }
}
