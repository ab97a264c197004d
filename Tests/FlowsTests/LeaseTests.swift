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

/// A queue whose cancel requests a scheduler only learns of through its own reports.
struct DeafToCancellations: SchedulerQueue {
  let queue: RunQueue

  func register(_ definitions: [DeploymentDefinition], worker: String) async throws -> [UInt32] {
    try await queue.register(definitions, worker: worker)
  }
  func deployment(named name: String, version: UInt32) async throws -> DeploymentVersion? {
    try await queue.deployment(named: name, version: version)
  }
  func claim(scheduler: String, limit: Int, deployments: Set<String>?) async throws -> [Claim] {
    try await queue.claim(scheduler: scheduler, limit: limit, deployments: deployments)
  }
  func heartbeat(_ lease: LeaseToken) async throws -> HeartbeatReply { try queue.heartbeat(lease) }
  func report(_ lease: LeaseToken, _ events: [RunEvent.OneOf_Kind]) async throws -> Run {
    try await queue.report(lease, events)
  }
  func notifyWhenWorkArrives(_ signal: WakeSignal) { queue.notifyWhenWorkArrives(signal) }
  func notifyOnCancelRequests(_ signal: WakeSignal) {}
  var nextDeadline: Timestamp? { queue.nextDeadline }
}

@Suite struct LeaseTests {
  /// A queue that tells the scheduler its leases last `lease` (the real ones last longer, so no
  /// lease expires under a loaded machine) and counts the heartbeats.
  /// The queue, counting the heartbeats that reach it.
  final class CountingHeartbeats: SchedulerQueue {
    let queue: RunQueue
    let heartbeats = Atomic<Int>(0)

    init(queue: RunQueue) { self.queue = queue }

    func register(_ definitions: [DeploymentDefinition], worker: String) async throws -> [UInt32] {
      try await queue.register(definitions, worker: worker)
    }
    func deployment(named name: String, version: UInt32) async throws -> DeploymentVersion? {
      try await queue.deployment(named: name, version: version)
    }
    func claim(scheduler: String, limit: Int, deployments: Set<String>?) async throws -> [Claim] {
      try await queue.claim(scheduler: scheduler, limit: limit, deployments: deployments)
    }
    func heartbeat(_ lease: LeaseToken) async throws -> HeartbeatReply {
      let reply = try queue.heartbeat(lease)
      heartbeats.add(1, ordering: .relaxed)
      return reply
    }
    func report(_ lease: LeaseToken, _ events: [RunEvent.OneOf_Kind]) async throws -> Run {
      try await queue.report(lease, events)
    }
    func notifyWhenWorkArrives(_ signal: WakeSignal) { queue.notifyWhenWorkArrives(signal) }
    func notifyOnCancelRequests(_ signal: WakeSignal) { queue.notifyOnCancelRequests(signal) }
    var nextDeadline: Timestamp? { queue.nextDeadline }
  }

  /// A lease shorter than the scheduler's heartbeat interval is still renewed at least three times
  /// per lease: the scheduler learns its length from the claim and wakes its heartbeat loop at once
  /// (it used to wait out the interval first, and the lease expired meanwhile).
  /// A lease of one second, a heartbeat interval of ten minutes and a step that lasts until the
  /// test ends it: the scheduler renews within a third of the lease as the queue grants it, so
  /// two seconds of the (manual) clock expire nothing.
  @Test func aShortLeaseIsRenewedThroughAStepLongerThanIt() async throws {
    let gate = WakeSignal()
    let flow = Flow(
      name: "long", parameters: ServerFlow.parameters,
      steps: [
        Step("wait") { _ in
          await gate.wait()
          return Gps_V1_DataInfo.with { $0.dataset = "done" }
        }
      ], descriptors: .gps)
    let deployment = Deployment(name: "long/default", flow: flow)
    let clock = ManualClock(SystemClock().now())
    let counting = Mutex<CountingHeartbeats?>(nil)
    try await withScheduler(
      registry: DeploymentRegistry([deployment]),
      queueOptions: { $0.leaseDuration = .seconds(1) },
      schedulerOptions: SchedulerOptions(id: "test", concurrency: 4, heartbeatInterval: .seconds(600)),
      schedulerQueue: { queue in
        let wrapped = CountingHeartbeats(queue: queue)
        counting.withLock { $0 = wrapped }
        return wrapped
      },
      clock: clock
    ) { queue, data in
      let heartbeats = { counting.withLock { $0?.heartbeats.load(ordering: .relaxed) ?? 0 } }
      let id = try await enqueue(queue, deployment, snippet)
      try await eventually("the step to start") { try queue.run(id)?.attemptOpen == true }
      for _ in 0..<5 {
        let before = heartbeats()
        try await advance(clock, by: .milliseconds(400), past: "the heartbeat loop")
        try await eventually("a heartbeat after 0.4 s of a 1 s lease") { heartbeats() > before }
        #expect(try await queue.tick().leasesExpired.isEmpty)
      }
      #expect(try queue.run(id)?.state == .running)
      gate.signal()
      try await eventually("completion") { try queue.run(id)?.state.isTerminal == true }
      #expect(try queue.run(id)?.state == .completed, "\((try? queue.run(id))??.stateMessage ?? "")")
      #expect(try queue.run(id)?.claims == 1)
    }
  }

}
