import Foundation
import GPSModel
import GPSTestSupport
import MetricsTestKit
import Queue
import Synchronization
import Testing

/// A run index that stops committing (a full disk, an immutable file) is reported once, shown in
/// the queue's index status and a metric, and the queue goes on.
@Suite struct IndexFailureTests {
  @Test func aFailingIndexIsReportedOnceAndShownAndTheQueueGoesOn() async throws {
    try await withTemporaryDirectory { directory in
      let metrics = TestMetrics()
      let reports = Mutex<[String]>([])
      var options = QueueOptions()
      options.runIndex = RunIndexOptions()
      options.metrics = metrics
      options.onIndexFailure = { error in reports.withLock { $0.append(error.message) } }
      let queue = try RunQueue(directory: directory.path, options: options)
      defer { queue.close() }
      #expect(try metrics.expectGauge("gps_run_index_failed").lastValue == 0)
      queue.injectIndexFailure(QueueError(code: .io, message: "attempt to write a readonly database"))
      _ = try await queue.enqueue(EnqueueRequest(deployment: "a/b", flow: "a"))
      try await eventually("the index failure") { queue.indexStatus?.failure != nil }
      #expect(queue.indexStatus?.failure?.contains("readonly database") == true)
      // More events: the queue goes on, and the failure is not reported again.
      for _ in 0..<3 { _ = try await queue.enqueue(EnqueueRequest(deployment: "a/b", flow: "a")) }
      #expect(queue.counts.total == 4)
      #expect(throws: QueueError.self) { try queue.flushIndex() }
      #expect(reports.withLock { $0 } == ["attempt to write a readonly database"])
      #expect(try metrics.expectGauge("gps_run_index_failed").lastValue == 1)
    }
  }
}
