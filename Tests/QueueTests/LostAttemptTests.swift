import Foundation
import GPSModel
import GPSTestSupport
import Queue
import SwiftProtobuf
import Testing

/// What a scheduler that vanished leaves behind is recorded as such, and a user's words survive.
@Suite struct LostAttemptTests {
  func events(_ directory: String, of id: RunID) throws -> [RunEvent] {
    var events: [RunEvent] = []
    try QueueHistory(directory: directory).events { _, event in
      if event.run == id { events.append(event) }
      return true
    }
    return events
  }

  @Test func anAttemptInProgressWhenTheLeaseExpiresIsRecordedAsLost() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory) { $0.leaseDuration = .seconds(5) }
      let queue = try fixture.open()
      var enqueue = request()
      enqueue.crashPolicy = CrashPolicy(maxRequeues: 1, requeueDelay: .zero)
      let id = try await queue.enqueue(enqueue).run.id
      let claim = try #require(try await queue.claim(scheduler: "gone"))
      try await queue.report(
        claim.token,
        [
          .started(.init()),
          .attemptStarted(
            .with {
              $0.step = "prepare"; $0.attempt = 1
            }),
        ])
      #expect(try queue.run(id)?.attemptOpen == true)
      fixture.clock.advance(by: .seconds(6))
      _ = try await queue.tick()
      let expiry = try #require(
        try events(fixture.directory, of: id).first { if case .leaseExpired = $0.kind { true } else { false } })
      guard case .leaseExpired(let expired) = expiry.kind else { return }
      #expect(expired.lostStep == "prepare")
      #expect(expired.lostAttempt == 1)
      #expect(try queue.run(id)?.attemptOpen == false)
      // The next execution's attempt is open, then closed by its outcome; a second outcome is refused.
      let again = try #require(try await queue.claim(scheduler: "next"))
      try await queue.report(
        again.token,
        [
          .started(.init()),
          .attemptStarted(
            .with {
              $0.step = "prepare"; $0.attempt = 1
            }),
        ])
      try await queue.report(
        again.token,
        .attemptSucceeded(
          .with {
            $0.step = "prepare"; $0.attempt = 1
          }))
      #expect(try queue.run(id)?.attemptOpen == false)
      await #expect(throws: QueueError.self) {
        try await queue.report(
          again.token,
          .attemptSucceeded(
            .with {
              $0.step = "prepare"; $0.attempt = 1
            }))
      }
      queue.close()
      // Snapshot and replay agree on the flag.
      #expect(try fixture.replayed() == (try fixture.open().state))
    }
  }

  @Test func aCancelReasonGivenByTheUserIsKept() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory)
      let queue = try fixture.open()
      let id = try await queue.enqueue(request()).run.id
      let claim = try #require(try await queue.claim(scheduler: "s1"))
      try await queue.report(claim.token, .started(.init()))
      _ = try await queue.cancel(id, by: "ana@host", reason: "wrong dataset")
      try await queue.report(claim.token, .cancelled(.with { $0.reason = "stopped by scheduler s1" }))
      let run = try #require(try queue.run(id))
      #expect(run.state == .cancelled)
      #expect(
        run.stateMessage == "cancelled by ana@host: wrong dataset; stopped by scheduler s1", "\(run.stateMessage)")
      queue.close()
    }
  }
}
