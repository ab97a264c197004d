import Foundation
import GPSModel
import GPSTestSupport
import Queue
import SwiftProtobuf
import Testing

@Suite struct RunQueueTests {
  @Test func aRunGoesFromScheduledToCompletedAndReplayGivesTheLiveState() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory)
      let queue = try fixture.open()
      let run = try await queue.enqueue(request()).run
      #expect(run.state == .scheduled)
      let claim = try #require(try await queue.claim(scheduler: "s1"))
      #expect(claim.run.id == run.id)
      #expect(claim.run.state == .pending)
      try await queue.report(claim.token, .started(.init()))
      try await queue.report(claim.token, attempt("prepare", 1))
      try await queue.report(claim.token, succeeded("prepare", 1))
      try await queue.report(claim.token, attempt("process", 1))
      try await queue.report(claim.token, succeeded("process", 1))
      let done = try await queue.report(claim.token, .completed(.with { $0.result = Data([1, 2, 3]) }))
      #expect(done.state == .completed)
      #expect(done.result == [1, 2, 3])
      #expect(done.eventCount == 8)
      #expect(done.lease == nil)
      #expect(queue.state == (try fixture.replayed()))
      #expect(queue.state.lastSequence == 8)

      var numbers: [UInt32] = []
      try QueueHistory(directory: fixture.directory).events { _, event in
        numbers.append(event.runEvent)
        return true
      }
      #expect(numbers == Array(1...8))
      queue.close()
    }
  }

  @Test func illegalTransitionsAreRefusedBeforeAnythingIsWritten() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory)
      let queue = try fixture.open()
      let run = try await queue.enqueue(request()).run
      let claim = try #require(try await queue.claim(scheduler: "s1"))
      let before = queue.state.lastSequence

      // Completing a run that has not started.
      let early = await #expect(throws: QueueError.self) {
        try await queue.report(claim.token, .completed(.init()))
      }
      #expect(early?.code == .illegalTransition)
      #expect(early?.message.contains("RunCompleted is not allowed while the run is Pending") == true)

      // A step attempt that skips a number.
      try await queue.report(claim.token, .started(.init()))
      try await queue.report(claim.token, attempt("prepare", 1))
      let skipped = await #expect(throws: QueueError.self) {
        try await queue.report(claim.token, succeeded("prepare", 2))
      }
      #expect(skipped?.code == .illegalTransition)

      // A lease that is not the run's.
      let forged = LeaseToken(runID: run.id, token: claim.lease.token + 100)
      let lost = await #expect(throws: QueueError.self) { try await queue.report(forged, .failed(.init())) }
      #expect(lost?.code == .leaseLost)

      // Retrying a run that is not finished, cancelling a finished one.
      await #expect(throws: QueueError.self) { try await queue.retry(run.id, by: "me") }
      try await queue.report(claim.token, .failed(.with { $0.reason = "boom" }))
      let finished = await #expect(throws: QueueError.self) { try await queue.cancel(run.id, by: "me") }
      #expect(finished?.message.contains("is already Failed") == true)
      let unknown = await #expect(throws: QueueError.self) { try await queue.cancel(RunID(), by: "me") }
      #expect(unknown?.code == .notFound)

      #expect(queue.state.lastSequence == before + 3)
      #expect(queue.state == (try fixture.replayed()))
      queue.close()
    }
  }

  @Test func theSameIdempotencyKeyReturnsTheExistingRun() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory)
      let queue = try fixture.open()
      let first = try await queue.enqueue(request(key: "order-42"))
      let second = try await queue.enqueue(request(key: "order-42"))
      #expect(first.created && !second.created)
      #expect(first.run.id == second.run.id)
      #expect(queue.state.runs.count == 1)
      #expect(queue.state.lastSequence == 1)
      queue.close()
      // Also after a restart (from the snapshot, then from the log alone).
      let reopened = try fixture.open()
      #expect(try await reopened.enqueue(request(key: "order-42")).run.id == first.run.id)
      reopened.close()
      try FileManager.default.removeItem(atPath: fixture.directory + "/snapshots")
      let replayed = try fixture.open()
      #expect(replayed.startup.snapshotSequence == nil)
      #expect(try await replayed.enqueue(request(key: "order-42")).created == false)
      replayed.close()
    }
  }

  @Test func claimsFollowPriorityThenStartThenEnqueueOrder() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory)
      let queue = try fixture.open()
      let low = try await queue.enqueue(request(priority: 0)).run
      var later = request(priority: 5)
      later.scheduledStart = fixture.clock.now() + .seconds(10)
      let future = try await queue.enqueue(later).run
      let high = try await queue.enqueue(request(priority: 5)).run
      let lowSecond = try await queue.enqueue(request(priority: 0)).run

      #expect(try await queue.claim(scheduler: "s")?.run.id == high.id)
      #expect(try await queue.claim(scheduler: "s")?.run.id == low.id)
      #expect(try await queue.claim(scheduler: "s")?.run.id == lowSecond.id)
      #expect(try await queue.claim(scheduler: "s") == nil)  // the future run is not due
      #expect(queue.nextDeadline == future.scheduledStart)
      fixture.clock.advance(by: .seconds(10))
      #expect(try await queue.claim(scheduler: "s")?.run.id == future.id)
      queue.close()
    }
  }

  @Test func aRunNotStartedInTimeIsMarkedLateAndCanStillRun() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory) { $0.lateAfter = .seconds(15) }
      let queue = try fixture.open()
      let run = try await queue.enqueue(request()).run
      fixture.clock.advance(by: .seconds(14))
      #expect(try await queue.tick().markedLate.isEmpty)
      fixture.clock.advance(by: .seconds(1))
      #expect(try await queue.tick().markedLate == [run.id])
      #expect(try queue.run(run.id)?.state == .late)
      #expect(try await queue.claim(scheduler: "s")?.run.state == .pending)
      queue.close()
    }
  }

  @Test func anExpiredLeaseCrashesTheRunOrRequeuesItByPolicy() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory) { $0.leaseDuration = .seconds(30) }
      let queue = try fixture.open()
      let crashing = try await queue.enqueue(request()).run
      var retrying = request()
      retrying.crashPolicy = CrashPolicy(maxRequeues: 1, requeueDelay: .seconds(5))
      retrying.priority = -1
      let requeued = try await queue.enqueue(retrying).run

      let first = try #require(try await queue.claim(scheduler: "s1"))
      let second = try #require(try await queue.claim(scheduler: "s1"))
      #expect(first.run.id == crashing.id && second.run.id == requeued.id)
      try await queue.report(first.token, .started(.init()))

      // Heartbeats keep the lease.
      fixture.clock.advance(by: .seconds(20))
      _ = try queue.heartbeat(first.token)
      _ = try queue.heartbeat(second.token)
      fixture.clock.advance(by: .seconds(20))
      #expect(try await queue.tick().leasesExpired.isEmpty)

      fixture.clock.advance(by: .seconds(10))
      let expired = try await queue.tick().leasesExpired
      #expect(Set(expired) == [crashing.id, requeued.id])
      let crashed = try #require(try queue.run(crashing.id))
      #expect(crashed.state == .crashed)
      #expect(crashed.stateMessage.contains("scheduler s1 stopped heartbeating"))
      let again = try #require(try queue.run(requeued.id))
      #expect(again.state == .awaitingRetry)
      #expect(again.requeues == 1)

      // The old scheduler's reports and heartbeats are refused.
      let lost = #expect(throws: QueueError.self) { try queue.heartbeat(first.token) }
      #expect(lost?.code == .leaseLost)

      // Re-queued after the delay; a second expiry exhausts the policy.
      #expect(try await queue.claim(scheduler: "s2") == nil)
      fixture.clock.advance(by: .seconds(5))
      let reclaim = try #require(try await queue.claim(scheduler: "s2"))
      #expect(reclaim.run.id == requeued.id)
      #expect(reclaim.run.lease?.scheduler == "s2")
      let stale = await #expect(throws: QueueError.self) { try await queue.report(second.token, .started(.init())) }
      #expect(stale?.message.contains("held by s2") == true)
      fixture.clock.advance(by: .seconds(31))
      _ = try await queue.tick()
      #expect(try queue.run(requeued.id)?.state == .crashed)
      #expect(queue.state == (try fixture.replayed()))
      queue.close()
    }
  }

  @Test func concurrencyLimitsHoldPerDeploymentAndPerTag() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory) {
        $0.limits = ConcurrencyLimits(deployments: ["flow/one": 1], tags: ["gpu": 2])
      }
      let queue = try fixture.open()
      let a = try await queue.enqueue(request("flow/one")).run
      let b = try await queue.enqueue(request("flow/one")).run
      let c = try await queue.enqueue(request("flow/two", tags: ["gpu"])).run
      let d = try await queue.enqueue(request("flow/three", tags: ["gpu"])).run
      let e = try await queue.enqueue(request("flow/two", tags: ["gpu"])).run

      var claimed: [Claim] = []
      while let claim = try await queue.claim(scheduler: "s") { claimed.append(claim) }
      #expect(claimed.map(\.run.id) == [a.id, c.id, d.id])
      #expect(queue.state.slotsByDeployment["flow/one"] == 1)
      #expect(queue.state.slotsByTag["gpu"] == 2)

      // A finished run frees its slots; the parked runs become claimable in order.
      try await queue.report(claimed[0].token, .crashed(.with { $0.reason = "test" }))
      #expect(try await queue.claim(scheduler: "s")?.run.id == b.id)
      try await queue.report(claimed[1].token, .crashed(.with { $0.reason = "test" }))
      #expect(try await queue.claim(scheduler: "s")?.run.id == e.id)
      #expect(try await queue.claim(scheduler: "s") == nil)
      queue.close()
    }
  }

  @Test func aBatchClaimTakesReadyRunsInOrderWithinTheLimitsInOneCommit() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory) {
        $0.limits = ConcurrencyLimits(deployments: ["flow/one": 2], tags: ["gpu": 1])
      }
      let queue = try fixture.open()
      var ids: [RunID] = []
      for index in 0..<6 {
        ids.append(
          try await queue.enqueue(request(index < 3 ? "flow/one" : "flow/two", tags: index >= 4 ? ["gpu"] : [])).run.id)
      }
      let before = queue.state.lastSequence
      let claims = try await queue.claim(scheduler: "s", limit: 10)
      // flow/one allows two; gpu allows one.
      #expect(claims.map(\.run.id) == [ids[0], ids[1], ids[3], ids[4]])
      #expect(Set(claims.map(\.lease.token)).count == 4)
      #expect(claims.allSatisfy { $0.run.state == .pending && $0.lease.scheduler == "s" })
      #expect(queue.state.lastSequence == before + 4)
      #expect(try await queue.claim(scheduler: "s", limit: 10).isEmpty)
      #expect(queue.state == (try fixture.replayed()))
      // One batch, as one frame of the log.
      let report = try LogVerifier(directory: fixture.directory).verify()
      #expect(report.batches == 7)
      queue.close()
    }
  }

  @Test func cancellingAScheduledRunIsImmediateAndARunningOnePassesThroughCancelling() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory)
      let queue = try fixture.open()
      let waiting = try await queue.enqueue(request(priority: -1)).run
      let running = try await queue.enqueue(request()).run
      let abandoned = try await queue.enqueue(request()).run
      let claim = try #require(try await queue.claim(scheduler: "s"))
      #expect(claim.run.id == running.id)
      try await queue.report(claim.token, .started(.init()))
      let other = try #require(try await queue.claim(scheduler: "s"))
      #expect(other.run.id == abandoned.id)

      #expect(try await queue.cancel(waiting.id, by: "alice", reason: "not needed").state == .cancelled)
      #expect(try queue.run(waiting.id)?.stateMessage == "cancelled by alice: not needed")
      #expect(try await queue.cancel(running.id, by: "alice").state == .cancelling)
      #expect(try await queue.cancel(running.id, by: "alice").state == .cancelling)  // idempotent
      #expect(try queue.heartbeat(claim.token).cancelRequested)
      let illegal = await #expect(throws: QueueError.self) { try await queue.report(claim.token, attempt("x", 1)) }
      #expect(illegal?.code == .illegalTransition)
      #expect(try await queue.report(claim.token, .cancelled(.with { $0.reason = "stopped" })).state == .cancelled)

      // A Cancelling run whose scheduler vanished ends Cancelled when its lease expires.
      _ = try await queue.cancel(abandoned.id, by: "bob")
      fixture.clock.advance(by: .seconds(31))
      _ = try await queue.tick()
      #expect(try queue.run(abandoned.id)?.state == .cancelled)
      #expect(queue.state == (try fixture.replayed()))
      queue.close()
    }
  }

  @Test func aUserRetryRunsAFailedRunAgainUnderTheSameID() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory)
      let queue = try fixture.open()
      let run = try await queue.enqueue(request()).run
      let claim = try #require(try await queue.claim(scheduler: "s"))
      try await queue.report(claim.token, .failed(.with { $0.reason = "bad input" }))
      #expect(try queue.run(run.id)?.stateMessage == "bad input")
      let retried = try await queue.retry(run.id, by: "alice")
      #expect(retried.state == .scheduled)
      #expect(retried.userRetries == 1)
      let again = try #require(try await queue.claim(scheduler: "s"))
      #expect(again.run.id == run.id)
      #expect(again.lease.token != claim.lease.token)
      queue.close()
    }
  }

  @Test func theStateAtAnySequenceOrTimeMatchesWhatTheLiveQueueHadThen() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory) { $0.snapshotEvery = 7 }
      let queue = try fixture.open()
      var states: [QueueState] = [QueueState()]
      func record() { states.append(queue.state) }
      for index in 0..<6 {
        fixture.clock.advance(by: .seconds(1))
        _ = try await queue.enqueue(request(priority: Int32(index)))
        record()
      }
      while let claim = try await queue.claim(scheduler: "s") {
        fixture.clock.advance(by: .seconds(1))
        record()
        try await queue.report(claim.token, .started(.init()))
        record()
        try await queue.report(claim.token, .completed(.init()))
        record()
      }
      let history = QueueHistory(directory: fixture.directory)
      for state in states.dropFirst() {
        #expect(try history.state(at: .sequence(state.lastSequence)) == state)
        #expect(try history.state(at: .time(state.lastTime)).lastSequence >= state.lastSequence)
      }
      // Times between events: the state after the last event before that time.
      let third = states[3]
      #expect(try history.state(at: .time(third.lastTime + .milliseconds(500))) == third)
      #expect(try history.state(at: .sequence(0)) == QueueState())
      queue.close()
    }
  }

}
