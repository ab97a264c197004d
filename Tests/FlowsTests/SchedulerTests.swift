import Control
import Crypto
import Flows
import Foundation
import GPSModel
import GPSTestSupport
import GRPCCore
import Logging
import Queue
import RPC
import ReferenceFlow
import Services
import SwiftProtobuf
import Synchronization
import Testing

let quietLogger = Logger(label: "gps.test", factory: { _ in SwiftLogNoOpLogHandler() })

let snippet = #"{"data_info": {"object_storage_urls": ["a"], "dataset": "b"}}"#

@Suite struct SchedulerTests {
  @Test func theSnippetsRunCompletesWithTheManifestDigestAndEveryEventRecorded() async throws {
    try await withScheduler(schedulerOptions: SchedulerOptions(id: "test", idleWait: .seconds(60))) { queue, data in
      // The scheduler is idle with a 60 s wait: only the wake-up on enqueue can start the run in time.
      let id = try await enqueue(queue, ServerFlow.deployment, snippet)
      try await eventually("completion") { try queue.run(id)?.state.isTerminal == true }
      let run = try #require(try queue.run(id))
      #expect(run.state == .completed, "\(run.stateMessage)")
      let response = try Gps_V1_Response(serializedBytes: run.result)
      let objectDigest = SHA256.hash(data: Array("hello".utf8)).hexString
      #expect(response.dataset == "b")
      #expect(response.objectCount == 1 && response.totalBytes == 5)
      #expect(response.datasetDigest == DatasetDigest.compute(objectDigests: [objectDigest]))
      #expect(run.resultType == "gps.v1.Response")
      #expect(
        summary(try await history(queue, data, run: id)) == [
          "RunEnqueued", "RunClaimed", "RunStarted", "TaskAttemptStarted prepare 1", "TaskAttemptSucceeded prepare 1",
          "TaskAttemptStarted process 1", "TaskAttemptSucceeded process 1", "RunCompleted",
        ])
      // The manifest recorded for step prepare is A's answer.
      let prepared = try await history(queue, data, run: id).compactMap { event -> Gps_V1_Manifest? in
        guard case .attemptSucceeded(let outcome) = event.kind, outcome.step == "prepare" else { return nil }
        return try Gps_V1_Manifest(serializedBytes: outcome.result)
      }
      #expect(prepared.first?.objects.first?.sha256 == objectDigest)
    }
  }

  @Test func serviceADownIsRetriedThenTheRunFailsWithTheReason() async throws {
    var flow = ServerFlow.flow
    flow.steps[0].retry = RetryPolicy(maxAttempts: 3, initialBackoff: .milliseconds(1), jitter: 0)
    let deployment = Deployment(name: "server-flow/down", flow: flow)
    try await withScheduler(
      aAddress: ServiceAddress(host: "127.0.0.1", port: 1), registry: DeploymentRegistry([deployment])
    ) {
      queue, data in
      let id = try await enqueue(queue, deployment, snippet)
      try await eventually("failure") { try queue.run(id)?.state.isTerminal == true }
      let run = try #require(try queue.run(id))
      #expect(run.state == .failed)
      #expect(run.stateMessage.hasPrefix("step prepare failed after 3 attempts: UNAVAILABLE: "), "\(run.stateMessage)")
      #expect(
        summary(try await history(queue, data, run: id)) == [
          "RunEnqueued", "RunClaimed", "RunStarted",
          "TaskAttemptStarted prepare 1", "TaskAttemptFailed prepare 1 UNAVAILABLE", "TaskRetryScheduled prepare 2",
          "TaskAttemptStarted prepare 2", "TaskAttemptFailed prepare 2 UNAVAILABLE", "TaskRetryScheduled prepare 3",
          "TaskAttemptStarted prepare 3", "TaskAttemptFailed prepare 3 UNAVAILABLE", "RunFailed",
        ])
    }
  }

  @Test func serviceBFailingSometimesIsRetriedUntilTheRunCompletes() async throws {
    // B fails its first two calls with UNAVAILABLE, then succeeds.
    let calls = Atomic(0)
    var b = ServiceServer.Configuration()
    b.faults = FaultInjectionInterceptor(
      failRate: 0.5, random: { calls.add(1, ordering: .relaxed).newValue <= 2 ? 0 : 1 })
    var flow = ServerFlow.flow
    flow.steps[1].retry = RetryPolicy(maxAttempts: 5, initialBackoff: .milliseconds(1), jitter: 0)
    let deployment = Deployment(name: "server-flow/flaky", flow: flow)
    try await withScheduler(b: b, registry: DeploymentRegistry([deployment])) { queue, data in
      let id = try await enqueue(queue, deployment, snippet)
      try await eventually("completion") { try queue.run(id)?.state.isTerminal == true }
      #expect(try queue.run(id)?.state == .completed)
      #expect(
        summary(try await history(queue, data, run: id)).filter { $0.contains("process") } == [
          "TaskAttemptStarted process 1", "TaskAttemptFailed process 1 UNAVAILABLE", "TaskRetryScheduled process 2",
          "TaskAttemptStarted process 2", "TaskAttemptFailed process 2 UNAVAILABLE", "TaskRetryScheduled process 3",
          "TaskAttemptStarted process 3", "TaskAttemptSucceeded process 3",
        ])
      #expect(try queue.run(id)?.attempts == 4)
    }
  }

  @Test func aStepThatExceedsItsTimeoutEndsTheRunTimedOut() async throws {
    var a = ServiceServer.Configuration()
    a.faults = FaultInjectionInterceptor(latency: .seconds(30))
    var flow = ServerFlow.flow
    flow.steps[0].timeout = .milliseconds(100)
    flow.steps[0].retry = RetryPolicy(maxAttempts: 2, initialBackoff: .milliseconds(1))
    let deployment = Deployment(name: "server-flow/slow", flow: flow)
    try await withScheduler(a: a, registry: DeploymentRegistry([deployment])) { queue, data in
      let id = try await enqueue(queue, deployment, snippet)
      try await eventually("time-out") { try queue.run(id)?.state.isTerminal == true }
      let run = try #require(try queue.run(id))
      #expect(run.state == .timedOut)
      #expect(
        run.stateMessage.hasPrefix("step prepare failed after 2 attempts: DEADLINE_EXCEEDED"), "\(run.stateMessage)")
    }
  }

  /// A step that is no gRPC call (and so has no call deadline) still gets its timeout from the
  /// scheduler: the attempt is cancelled, fails DEADLINE_EXCEEDED and is retried. The clock moves
  /// only when the test says, so the timeout fires however slow the machine.
  @Test func aStepThatIgnoresItsDeadlineIsTimedOutAndRetried() async throws {
    let flow = Flow(
      name: "stuck", parameters: ServerFlow.parameters,
      steps: [
        Step("wait", retry: RetryPolicy(maxAttempts: 3, initialBackoff: .milliseconds(1)), timeout: .milliseconds(50)) {
          context in
          // The first attempt would hang for an hour of real time; the second answers at once.
          if context.attempt == 1 { try await Task.sleep(for: .seconds(3600)) }
          return Gps_V1_DataInfo.with { $0.dataset = "attempt \(context.attempt)" }
        }
      ], descriptors: .gps)
    let deployment = Deployment(name: "stuck/default", flow: flow)
    let clock = ManualClock(SystemClock().now())
    try await withScheduler(registry: DeploymentRegistry([deployment]), clock: clock) { queue, data in
      let id = try await enqueue(queue, deployment, snippet)
      try await eventually("the first attempt to start") { try queue.run(id)?.attemptOpen == true }
      // Nothing times out while the clock stands still; then the attempt's 50 ms pass, and the
      // retry's backoff (1 ms, 1.2 ms at most with jitter).
      #expect(try queue.run(id)?.stepAttempt == 1)
      try await advance(clock, by: .milliseconds(50), past: "the attempt's timer")
      try await advance(clock, by: .milliseconds(2), past: "the backoff")
      try await eventually("the run to end") { try queue.run(id)?.state.isTerminal == true }
      #expect(try queue.run(id)?.state == .completed, "\((try? queue.run(id))??.stateMessage ?? "")")
      let events = try await history(queue, data, run: id)
      #expect(
        summary(events).filter { $0.contains("wait") } == [
          "TaskAttemptStarted wait 1", "TaskAttemptFailed wait 1 DEADLINE_EXCEEDED", "TaskRetryScheduled wait 2",
          "TaskAttemptStarted wait 2", "TaskAttemptSucceeded wait 2",
        ])
      let failure = events.compactMap { event -> Gps_V1_TaskAttemptFailed? in
        if case .attemptFailed(let failed) = event.kind { return failed }
        return nil
      }
      #expect(failure.map(\.message) == ["the step timed out after 0.05 seconds"])
      // Durations are the scheduler's clock's: the timed-out attempt lasted at least its timeout.
      #expect(failure.map(\.durationMicros).allSatisfy { $0 >= 50_000 }, "\(failure.map(\.durationMicros))")
    }
  }

  @Test func aRunTimeoutEndsASlowRunTimedOut() async throws {
    var a = ServiceServer.Configuration()
    a.faults = FaultInjectionInterceptor(latency: .seconds(3600))
    let deployment = Deployment(name: "server-flow/bounded", flow: ServerFlow.flow, timeout: .milliseconds(200))
    let clock = ManualClock(SystemClock().now())
    try await withScheduler(a: a, registry: DeploymentRegistry([deployment]), clock: clock) { queue, _ in
      let id = try await enqueue(queue, deployment, snippet)
      try await eventually("the call to A to start") { try queue.run(id)?.attemptOpen == true }
      try await advance(clock, by: .milliseconds(200), past: "the run's timer")
      try await eventually("time-out") { try queue.run(id)?.state.isTerminal == true }
      #expect(try queue.run(id)?.state == .timedOut)
      #expect(try queue.run(id)?.stateMessage == "the run exceeded its timeout of 0.2 seconds")
    }
  }

  @Test func cancellingARunDuringASlowStepCancelsTheCall() async throws {
    var a = ServiceServer.Configuration()
    a.faults = FaultInjectionInterceptor(latency: .seconds(60))
    try await withScheduler(a: a, schedulerOptions: SchedulerOptions(id: "test", heartbeatInterval: .seconds(60))) {
      queue, data in
      let id = try await enqueue(queue, ServerFlow.deployment, snippet)
      try await eventually("the slow step") { try queue.run(id)?.step == "prepare" }
      let start = ContinuousClock.now
      #expect(try await queue.cancel(id, by: "alice").state == .cancelling)
      // With a 60 s heartbeat interval, only the cancel notification can stop it this soon.
      try await eventually("cancellation", limit: .seconds(10)) { try queue.run(id)?.state == .cancelled }
      #expect(ContinuousClock.now - start < .seconds(10))
      let events = summary(try await history(queue, data, run: id))
      #expect(events.suffix(3) == ["CancelRequested", "TaskAttemptFailed prepare 1 CANCELLED", "RunCancelled"])
    }
  }

  @Test func aCancelThatLandsBetweenStepsEndsTheRunCancelled() async throws {
    let queueBox = Mutex<RunQueue?>(nil)
    let flow = Flow(
      name: "twostep", parameters: ServerFlow.parameters,
      steps: [
        Step("first") { context in
          // The user cancels while this step runs; the step still finishes.
          _ = try await queueBox.withLock { $0 }!.cancel(context.runID, by: "alice")
          return Gps_V1_DataInfo()
        },
        Step("second") { _ in Gps_V1_DataInfo() },
      ], descriptors: .gps)
    let deployment = Deployment(name: "twostep/default", flow: flow)
    // The scheduler hears of the cancel only when its next step is refused: no cancel
    // notifications, and heartbeats once a minute.
    try await withScheduler(
      registry: DeploymentRegistry([deployment]),
      schedulerOptions: SchedulerOptions(id: "test", heartbeatInterval: .seconds(60)),
      schedulerQueue: { DeafToCancellations(queue: $0) }
    ) { queue, data in
      queueBox.withLock { $0 = queue }
      let id = try await enqueue(queue, deployment, snippet)
      try await eventually("the run to end") { try queue.run(id)?.state.isTerminal == true }
      #expect(try queue.run(id)?.state == .cancelled, "\((try? queue.run(id))??.stateMessage ?? "")")
      #expect(!summary(try await history(queue, data, run: id)).contains("TaskAttemptStarted second 1"))
    }
  }

  @Test func aCachedStepReusesTheResultOfTheSameInput() async throws {
    let calls = Atomic(0)
    let flow = Flow(
      name: "cached", parameters: ServerFlow.parameters,
      steps: [
        Step("count", cacheResults: true) { context in
          calls.add(1, ordering: .relaxed)
          return Gps_V1_DataInfo.with { $0.dataset = "computed for \(context.runID)" }
        }
      ], descriptors: .gps)
    let deployment = Deployment(name: "cached/default", flow: flow)
    try await withScheduler(registry: DeploymentRegistry([deployment])) { queue, data in
      let first = try await enqueue(queue, deployment, snippet)
      try await eventually("first run") { try queue.run(first)?.state.isTerminal == true }
      let second = try await enqueue(queue, deployment, snippet)
      try await eventually("second run") { try queue.run(second)?.state.isTerminal == true }
      let other = try await enqueue(queue, deployment, #"{"data_info": {"dataset": "other"}}"#)
      try await eventually("third run") { try queue.run(other)?.state.isTerminal == true }
      #expect(try queue.run(first)?.state == .completed)
      #expect(try queue.run(second)?.state == .cached)
      #expect(try queue.run(second)?.result == queue.run(first)?.result)
      #expect(try queue.run(other)?.state == .completed)
      #expect(calls.load(ordering: .relaxed) == 2)
      #expect(summary(try await history(queue, data, run: second)).contains("TaskAttemptSucceeded count 1 cached"))
      // After a restart the cache comes back from the log: both inputs are known.
      _ = try await history(queue, data, run: other)
      let seeded = try Scheduler.cachedResults(
        in: QueueHistory(directory: data), registry: DeploymentRegistry([deployment]))
      #expect(seeded.count == 2)
      #expect(seeded.values.contains(try queue.run(first)!.result))
    }
  }

  @Test func stepsCarryTheIdempotencyKeyOfTheirAttempt() async throws {
    let keys = Mutex<[String]>([])
    let flow = Flow(
      name: "keys", parameters: ServerFlow.parameters,
      steps: [
        Step("first", retry: RetryPolicy(maxAttempts: 2, initialBackoff: .milliseconds(1))) { context in
          keys.withLock { $0.append(context.idempotencyKey) }
          if context.attempt == 1 { throw RPCError(code: .unavailable, message: "once") }
          return Gps_V1_DataInfo()
        }
      ], descriptors: .gps)
    let deployment = Deployment(name: "keys/default", flow: flow)
    try await withScheduler(registry: DeploymentRegistry([deployment])) { queue, _ in
      let id = try await enqueue(queue, deployment, snippet)
      try await eventually("completion") { try queue.run(id)?.state.isTerminal == true }
      #expect(keys.withLock { $0 } == ["\(id)/first/1", "\(id)/first/2"])
    }
  }

  /// The scheduler enforces a step's deadline itself; the services learn it from `grpc-timeout`.
  @Test func serverFlowsCallsTellTheServicesTheirKeyAndTheStepsDeadline() async throws {
    let logs = CapturedLogs()
    try await withScheduler(serviceLogger: logs.logger()) { queue, _ in
      let id = try await enqueue(queue, ServerFlow.deployment, snippet)
      try await eventually("completion") { try queue.run(id)?.state.isTerminal == true }
      #expect(try queue.run(id)?.state == .completed)
      let calls = logs.all.filter { $0.message == "call finished" }.sorted {
        ($0.metadata["idempotency_key"] ?? "") < ($1.metadata["idempotency_key"] ?? "")
      }
      #expect(calls.map { $0.metadata["idempotency_key"] } == ["\(id)/prepare/1", "\(id)/process/1"])
      // Both steps of server-flow have a 30 s timeout.
      #expect(calls.map { $0.metadata["timeout"] } == ["30000000u", "30000000u"])
    }
  }

  @Test func aSchedulerThatDiesMidRunLosesItsLeaseAndTheRunIsRequeuedThenCompleted() async throws {
    try await withTemporaryDirectory { directory in
      let root = directory.appendingPathComponent("objects")
      try root.writeFile("a", Array("hello".utf8))
      var options = QueueOptions()
      options.log.fsync = .none
      // The queue's clock moves only when the test says: leases expire exactly when told, however
      // slow the machine.
      let clock = ManualClock(SystemClock().now())
      let queue = try RunQueue(directory: directory.appendingPathComponent("data").path, options: options, clock: clock)
      defer { queue.close() }
      var slow = ServiceServer.Configuration()
      slow.faults = FaultInjectionInterceptor(latency: .seconds(60))
      let requeue = Deployment(
        name: "server-flow/requeue", flow: ServerFlow.flow, crashPolicy: CrashPolicy(maxRequeues: 1))
      let crash = Deployment(name: "server-flow/crash", flow: ServerFlow.flow, crashPolicy: CrashPolicy(maxRequeues: 0))
      let registry = DeploymentRegistry([requeue, crash])
      let requeued = try await enqueue(queue, requeue, snippet)
      let crashed = try await enqueue(queue, crash, snippet)
      // First scheduler: A hangs, so both runs are mid-step when it dies.
      try await withRunningServices(objectRoot: root, a: slow) { a, b in
        try await withServiceClients(a: a, b: b) { clients in
          let first = Scheduler(
            queue: queue, registry: registry, dependencies: Dependencies(clients),
            options: SchedulerOptions(id: "doomed", heartbeatInterval: .milliseconds(50)), logger: quietLogger)
          try await withThrowingTaskGroup(of: Void.self) { inner in
            inner.addTask { try await first.run() }
            try await eventually("both runs running") {
              try queue.run(requeued)?.step == "prepare" && queue.run(crashed)?.step == "prepare"
            }
            inner.cancelAll()  // the scheduler dies: no more heartbeats, no reports
          }
        }
      }
      #expect(try await queue.tick().leasesExpired.isEmpty)
      clock.advance(by: options.leaseDuration + .seconds(1))
      #expect(Set(try await queue.tick().leasesExpired) == [requeued, crashed])
      #expect(try queue.run(crashed)?.state == .crashed)
      #expect(try queue.run(crashed)?.stateMessage.contains("scheduler doomed stopped heartbeating") == true)
      #expect(try queue.run(requeued)?.state == .awaitingRetry)
      // A second scheduler finishes the re-queued run.
      try await withRunningServices(objectRoot: root) { a, b in
        try await withServiceClients(a: a, b: b) { clients in
          let second = Scheduler(
            queue: queue, registry: registry, dependencies: Dependencies(clients),
            options: SchedulerOptions(id: "rescuer", heartbeatInterval: .milliseconds(50)), logger: quietLogger)
          try await withThrowingTaskGroup(of: Void.self) { inner in
            inner.addTask { try await second.run() }
            try await eventually("the re-queued run to complete") { try queue.run(requeued)?.state == .completed }
            inner.cancelAll()
          }
        }
      }
      #expect(try queue.run(requeued)?.claims == 2)
      #expect(try queue.run(crashed)?.state == .crashed)
    }
  }
}
