import Foundation
import GPSModel
import GPSTestSupport
import MetricsTestKit
import Queue
import SwiftProtobuf
import Testing

#if canImport(Glibc)
  import Glibc
#endif

@Suite struct QueueMetricsTests {
  let deployment = [("deployment", "flow/deploy")]

  func count(_ metrics: TestMetrics, _ label: String, _ dimensions: [(String, String)]) -> Int64 {
    metrics.counterTotal(label: label, dimensions: dimensions)
  }

  @Test func latenciesAttemptsRetriesAndEndingsFollowTheQueuesClock() async throws {
    try await withTemporaryDirectory { directory in
      let metrics = TestMetrics()
      let fixture = QueueFixture(directory: directory) {
        $0.metrics = metrics
        $0.leaseDuration = .seconds(30)
      }
      let queue = try fixture.open()
      let crashing = try await queue.enqueue(request()).run
      fixture.clock.advance(by: .seconds(2))
      let claim = try #require(try await queue.claim(scheduler: "s"))
      #expect(claim.run.id == crashing.id)
      try await queue.report(claim.token, .started(.init()))
      // Enqueue → Running took 2 s of the queue's clock, exactly.
      #expect(try metrics.expectTimer("gps_run_start_latency_seconds").values == [2_000_000_000])
      try await queue.report(
        claim.token,
        [
          attempt("process", 1),
          .attemptFailed(
            .with {
              $0.step = "process"
              $0.attempt = 1
              $0.durationMicros = 1500
              $0.retryable = true
            }),
          .retryScheduled(
            .with {
              $0.step = "process"
              $0.nextAttempt = 2
              $0.retryAtMicros = fixture.clock.now().micros
            }),
        ])
      let failedAttempts = try metrics.expectTimer(
        "gps_step_attempt_duration_seconds", deployment + [("step", "process"), ("outcome", "failed")])
      #expect(failedAttempts.values == [1_500_000])
      #expect(count(metrics, "gps_step_retries_total", deployment + [("step", "process")]) == 1)

      // The scheduler vanishes: its lease expires 30 s later and the run is Crashed.
      fixture.clock.advance(by: .seconds(31))
      #expect(try await queue.tick().leasesExpired == [crashing.id])
      #expect(count(metrics, "gps_leases_expired_total", []) == 1)
      #expect(count(metrics, "gps_runs_crashed_total", deployment) == 1)
      #expect(
        try metrics.expectTimer("gps_run_duration_seconds", [("state", "Crashed")]).values == [33_000_000_000])

      // Cancelled before it starts: counted as cancelled, never as started.
      let cancelled = try await queue.enqueue(request()).run
      try await queue.cancel(cancelled.id, by: "alice")
      #expect(count(metrics, "gps_runs_cancelled_total", deployment) == 1)
      #expect(count(metrics, "gps_runs_enqueued_total", deployment) == 2)
      #expect(try metrics.expectTimer("gps_run_start_latency_seconds").values.count == 1)

      queue.updateGauges()
      #expect(try metrics.expectGauge("gps_runs", [("state", "Crashed")]).lastValue == 1)
      #expect(try metrics.expectGauge("gps_runs", [("state", "Cancelled")]).lastValue == 1)
      #expect(try metrics.expectGauge("gps_queue_depth").lastValue == 0)
      let events = try fixture.replayed().lastSequence
      #expect(metrics.recorders(label: "gps_log_batch_events").flatMap(\.values).reduce(0, +) == Double(events))
      queue.close()

      // Opening the queue again replays its log and counts nothing of it.
      let reopenedMetrics = TestMetrics()
      var options = fixture.options
      options.metrics = reopenedMetrics
      let reopened = try RunQueue(directory: fixture.directory, options: options, clock: fixture.clock)
      #expect(reopenedMetrics.counters.allSatisfy { $0.totalValue == 0 })
      reopened.updateGauges()
      #expect(try reopenedMetrics.expectGauge("gps_runs", [("state", "Crashed")]).lastValue == 1)
      reopened.close()
    }
  }

  @Test func aWriteThatFailsCountsNothing() async throws {
    try await withTemporaryDirectory { directory in
      let metrics = TestMetrics()
      let fileSystem = FaultyFileSystem()
      var options = QueueOptions()
      options.metrics = metrics
      let queue = try RunQueue(
        directory: directory.path, options: options, clock: ManualClock(), fileSystem: fileSystem)
      _ = try await queue.enqueue(request(key: "kept"))
      fileSystem.failSyncs(errno: EIO)
      await #expect(throws: QueueError.self) { try await queue.enqueue(request(key: "lost")) }
      #expect(count(metrics, "gps_runs_enqueued_total", deployment) == 1)
      queue.close()
    }
  }

  @Test func deploymentsBeyondTheLabelLimitShareTheLabelOther() async throws {
    try await withTemporaryDirectory { directory in
      let metrics = TestMetrics()
      let fixture = QueueFixture(directory: directory) { $0.metrics = metrics }
      let queue = try fixture.open()
      for index in 0...500 { _ = try await queue.enqueue(request("flow/d\(index)")) }
      let labels = Set(metrics.counters(label: "gps_runs_enqueued_total").flatMap(\.dimensions).map(\.1))
      #expect(labels.count == 501)
      #expect(labels.contains("other") && !labels.contains("flow/d500"))
      #expect(count(metrics, "gps_runs_enqueued_total", [("deployment", "other")]) == 1)
      queue.close()
    }
  }
}
