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
      // The same report again (its answer lost): answered with the run as it is, not applied twice.
      let written = try events(fixture.directory, of: id).count
      let repeated = try await queue.report(
        again.token,
        .attemptSucceeded(
          .with {
            $0.step = "prepare"; $0.attempt = 1
          }))
      #expect(repeated.eventCount == (try queue.run(id)?.eventCount))
      #expect(try events(fixture.directory, of: id).count == written)
      // An outcome of an attempt that is not the one running is refused.
      await #expect(throws: QueueError.self) {
        try await queue.report(
          again.token,
          .attemptSucceeded(
            .with {
              $0.step = "process"; $0.attempt = 1
            }))
      }
      queue.close()
      // Snapshot and replay agree on the flag.
      #expect(try fixture.replayed() == (try fixture.open().state))
    }
  }

  /// A scheduler whose report was applied but whose answer was lost (the leader died, the
  /// connection dropped) sends it again: each report of a run's life, repeated, is answered with the
  /// run where it left it and written once.
  @Test func aReportSentAgainAfterALostAnswerIsWrittenOnce() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory)
      let queue = try fixture.open()
      let id = try await queue.enqueue(request()).run.id
      let claim = try #require(try await queue.claim(scheduler: "s1"))
      func attempt(_ step: String, _ number: UInt32) -> Gps_V1_TaskAttemptStarted {
        .with {
          $0.step = step; $0.attempt = number
        }
      }
      let reports: [[RunEvent.OneOf_Kind]] = [
        [.started(.init()), .attemptStarted(attempt("prepare", 1))],
        [
          .attemptSucceeded(
            .with {
              $0.step = "prepare"; $0.attempt = 1
            }), .attemptStarted(attempt("process", 1)),
        ],
        [
          .attemptFailed(
            .with {
              $0.step = "process"; $0.attempt = 1
            }),
          .retryScheduled(
            .with {
              $0.step = "process"; $0.nextAttempt = 2
            }),
        ],
        [.attemptStarted(attempt("process", 2))],
      ]
      for report in reports {
        let applied = try await queue.report(claim.token, report)
        let written = try events(fixture.directory, of: id).count
        let again = try await queue.report(claim.token, report)
        #expect(again.eventCount == applied.eventCount && again.state == applied.state, "\(report)")
        #expect(try events(fixture.directory, of: id).count == written, "\(report) was written twice")
      }
      // A report that ended the run leaves no lease to match: it is refused as lease lost, and the
      // run, ended as it said, tells the scheduler it was applied (RemoteQueue asks for it).
      let end: [RunEvent.OneOf_Kind] = [
        .attemptSucceeded(
          .with {
            $0.step = "process"; $0.attempt = 2
          }), .completed(.init()),
      ]
      try await queue.report(claim.token, end)
      await #expect(throws: QueueError.self) { try await queue.report(claim.token, end) }
      let ended = try #require(try queue.run(id))
      #expect(ended.state == .completed && ended.reflects(report: end.last!))
      queue.close()
      #expect(try fixture.replayed() == (try fixture.open().state))
    }
  }

  /// A claim whose answer was lost, sent again under its id, is answered with the runs it
  /// claimed (still Pending under it), not with others; a claim sent again that had claimed
  /// nothing claims as a new one would. The id survives a snapshot.
  @Test func aClaimSentAgainAfterALostAnswerGetsTheRunsItClaimed() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory)
      var queue = try fixture.open()
      for _ in 0..<4 { _ = try await queue.enqueue(request()) }
      let first = try await queue.claim(scheduler: "s1", limit: 2, maxParameterBytes: .max, claimID: "c1")
      #expect(first.count == 2)
      let written = try loggedEvents(in: fixture.directory).count
      queue.close()
      queue = try fixture.open()
      let again = try await queue.claim(
        scheduler: "s1", limit: 2, maxParameterBytes: .max, claimID: "c1", retried: true)
      #expect(again.map(\.run.id) == first.map(\.run.id))
      #expect(again.map(\.lease.token) == first.map(\.lease.token))
      #expect(try loggedEvents(in: fixture.directory).count == written, "a claim sent again claimed more")
      // Another scheduler's claim of the same id, or one not retried, does not get them.
      let other = try await queue.claim(
        scheduler: "s2", limit: 1, maxParameterBytes: .max, claimID: "c1", retried: true)
      #expect(other.count == 1 && !first.map(\.run.id).contains(other[0].run.id))
      let unknown = try await queue.claim(
        scheduler: "s1", limit: 1, maxParameterBytes: .max, claimID: "c2", retried: true)
      #expect(unknown.count == 1 && !first.map(\.run.id).contains(unknown[0].run.id))
      queue.close()
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
