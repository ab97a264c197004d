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

/// The events of one run, read from the log once everything the queue has applied is durable.
func history(_ queue: RunQueue, _ directory: String, run: RunID) async throws -> [RunEvent] {
  let applied = queue.state.lastSequence
  try await eventually("the log to catch up") { queue.durableSequence >= applied }
  var events: [RunEvent] = []
  try QueueHistory(directory: directory).events { _, event in
    if event.run == run { events.append(event) }
    return true
  }
  return events
}

func summary(_ events: [RunEvent]) -> [String] {
  events.map { event in
    switch event.kind {
    case .attemptStarted(let a): "\(event.typeName) \(a.step) \(a.attempt)"
    case .attemptSucceeded(let a): "\(event.typeName) \(a.step) \(a.attempt)\(a.cached ? " cached" : "")"
    case .attemptFailed(let a): "\(event.typeName) \(a.step) \(a.attempt) \(a.statusName)"
    case .retryScheduled(let r): "\(event.typeName) \(r.step) \(r.nextAttempt)"
    default: event.typeName
    }
  }
}

/// A queue, services A and B over `objectRoot`, and a scheduler, for the duration of `body`.
func withScheduler(
  objects: [String: String] = ["a": "hello"],
  a aConfiguration: ServiceServer.Configuration = .init(),
  b bConfiguration: ServiceServer.Configuration = .init(),
  aAddress: ServiceAddress? = nil,
  registry: DeploymentRegistry = .standard,
  queueOptions: (inout QueueOptions) -> Void = { _ in },
  schedulerOptions: SchedulerOptions = SchedulerOptions(id: "test", concurrency: 8, heartbeatInterval: .seconds(1)),
  schedulerQueue: @Sendable @escaping (RunQueue) -> any SchedulerQueue = { $0 },
  clock: any WallClock = SystemClock(),
  serviceLogger: Logger = quietLogger,
  body: @Sendable @escaping (RunQueue, String) async throws -> Void
) async throws {
  try await withTemporaryDirectory { directory in
    let root = directory.appendingPathComponent("objects")
    for (name, text) in objects { try root.writeFile(name, Array(text.utf8)) }
    var options = QueueOptions()
    options.log.fsync = .none
    options.limits = registry.concurrencyLimits
    queueOptions(&options)
    let data = directory.appendingPathComponent("data").path
    let queue = try RunQueue(directory: data, options: options, clock: clock)
    defer { queue.close() }
    try await withRunningServices(objectRoot: root, a: aConfiguration, b: bConfiguration, logger: serviceLogger) {
      a, b in
      try await withServiceClients(a: aAddress ?? a, b: b) { clients in
        let scheduler = Scheduler(
          queue: schedulerQueue(queue), registry: registry, dependencies: Dependencies(clients),
          options: schedulerOptions, logger: quietLogger, clock: clock)
        try await withThrowingTaskGroup(of: Void.self) { group in
          group.addTask { try await scheduler.run() }
          group.addTask { try await queue.maintain(maximumWait: .milliseconds(20)) }
          try await body(queue, data)
          group.cancelAll()
        }
      }
    }
  }
}

func enqueue(_ queue: RunQueue, _ deployment: Deployment, _ json: String) async throws -> RunID {
  try await queue.enqueue(try deployment.enqueueRequest(parametersJSON: json, enqueuedBy: "test")).run.id
}
