import Flows
import Foundation
import GPSModel
import GPSServerTesting
import GRPCCore
import Logging
import Queue
import RPC
import ReferenceFlow
import Services
import Web

/// Runs of server-flow end to end: services A and B on loopback (a 5-byte object), the queue with
/// every event durable (fsync `always`), and the scheduler, all in this process.
func benchEndToEnd(directory: String, runs: Int, concurrency: Int, latencyRuns: Int, repetitions: Int) async throws {
  let root = URL(fileURLWithPath: freshDirectory(directory + "/objects"))
  try Data("hello".utf8).write(to: root.appendingPathComponent("a"))
  let quiet = Logger(label: "gps.bench", factory: { _ in SwiftLogNoOpLogHandler() })
  let deployment = ServerFlow.deployment
  let parameters = sampleParameters
  print("\nend to end: server-flow with A and B on loopback, every event durable (fsync always)")
  try await withRunningServices(objectRoot: root, logger: quiet) { a, b in
    try await withServiceClients(a: a, b: b) { clients in
      // The ceiling without GPS: the same two calls per run, 64 at a time, no queue, no events.
      var pipelineRates: [Double] = []
      var pipelineUsage: [ProcessUsage] = []
      let dataInfo = try ServerFlow.decodeDataInfo(ServerFlow.sampleDataInfoJSON)
      for _ in 0..<repetitions {
        let start = ContinuousClock.now
        let usageBefore = ProcessUsage.now
        try await callsAlone(runs, dataInfo: dataInfo, clients: clients, concurrency: concurrency)
        pipelineUsage.append((ProcessUsage.now - usageBefore) / runs)
        pipelineRates.append(Double(runs) / (ContinuousClock.now - start).seconds)
      }
      print(
        String(
          format:
            "  the calls alone (A then B per run, %d at a time, no queue): %.0f runs/s (%.0f us CPU, %.1f context switches per run)",
          concurrency, median(pipelineRates), median(pipelineUsage.map(\.cpuMicros)),
          median(pipelineUsage.map(\.switches))))

      // Two ways: draining a backlog enqueued beforehand (the scheduler's throughput), and with the
      // runs enqueued by 16 clients in this same process while the scheduler works.
      for concurrentEnqueue in [false, true] {
        var rates: [Double] = []
        var eventsPerBatch: [Double] = []
        var limits: [Double] = []
        var usage: [ProcessUsage] = []
        var runsPerClaim: [Double] = []
        for _ in 0..<repetitions {
          let data = freshDirectory(directory + "/e2e")
          var options = QueueOptions()
          if ProcessInfo.processInfo.environment["GPS_BENCH_FSYNC"] == "none" { options.log.fsync = .none }
          let queue = try RunQueue(directory: data, options: options)
          let enqueueAll = {
            try await enqueueRuns(runs, of: deployment, parametersJSON: parameters, into: queue)
          }
          if !concurrentEnqueue { try await enqueueAll() }
          let before = try LogVerifier(directory: data).verify()
          let start = ContinuousClock.now
          let usageBefore = ProcessUsage.now
          try await drain(
            queue, runs: runs, registry: .standard, dependencies: Dependencies(clients), concurrency: concurrency,
            logger: quiet,
            meanwhile: concurrentEnqueue ? enqueueAll : {})
          let elapsed = (ContinuousClock.now - start).seconds
          usage.append((ProcessUsage.now - usageBefore) / runs)
          queue.close(writingSnapshot: false)
          let report = try LogVerifier(directory: data).verify()
          // Claims committed together share their time: runs per claim commit.
          var claimTimes: [Timestamp: Int] = [:]
          try QueueHistory(directory: data).events { _, event in
            if case .claimed = event.kind { claimTimes[event.time, default: 0] += 1 }
            return true
          }
          runsPerClaim.append(Double(runs) / Double(max(1, claimTimes.count)))
          let batches = Double(report.batches - before.batches)
          let perBatch = Double(report.records - before.records) / batches
          let bytesPerBatch = Double(report.bytes - before.bytes) / batches
          let eventsPerRun = Double(report.records - before.records) / Double(runs)
          rates.append(Double(runs) / elapsed)
          eventsPerBatch.append(perBatch)
          limits.append(
            rawSyncsPerSecond(directory: data, size: Int(bytesPerBatch), seconds: 2) * perBatch / eventsPerRun)
        }
        let label = concurrentEnqueue ? "enqueued meanwhile by 16 clients" : "backlog drained"
        print(
          "  \(label): "
            + String(
              format:
                "%.0f completed runs/s (%d runs, scheduler concurrency %d, %.1f events per batch, %.1f runs per claim; %.0f us CPU, %.1f context switches per run) = %.2f of the calls alone; raw write+fdatasync limit for such batches: %.0f runs/s",
              median(rates), runs, concurrency, median(eventsPerBatch), median(runsPerClaim),
              median(usage.map(\.cpuMicros)),
              median(usage.map(\.switches)), median(rates) / median(pipelineRates), median(limits)))
      }

      try await benchSchedulerAlone(
        directory: directory, runs: runs, concurrency: concurrency, repetitions: repetitions)

      // Latency on an idle system: one run at a time, times from the events' own timestamps.
      let data = freshDirectory(directory + "/e2e-latency")
      let queue = try RunQueue(directory: data)
      let scheduler = Scheduler(
        queue: queue, registry: .standard, dependencies: Dependencies(clients),
        options: SchedulerOptions(id: "bench", concurrency: concurrency, idleWait: .seconds(60)), logger: quiet)
      var toRunning: [Double] = []
      var toCompleted: [Double] = []
      var clientToCompleted: [Double] = []
      try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await scheduler.run() }
        for _ in 0..<latencyRuns {
          let start = ContinuousClock.now
          let id = try await queue.enqueue(try deployment.enqueueRequest(parametersJSON: parameters)).run.id
          while try queue.run(id)?.state != .completed { try await Task.sleep(for: .microseconds(200)) }
          clientToCompleted.append((ContinuousClock.now - start).seconds * 1000)
        }
        group.cancelAll()
      }
      queue.close(writingSnapshot: false)
      var enqueued: [RunID: Timestamp] = [:]
      try QueueHistory(directory: data).events { _, event in
        guard let run = event.run else { return true }
        switch event.kind {
        case .enqueued: enqueued[run] = event.time
        case .started: toRunning.append(Double((event.time - enqueued[run]!).micros) / 1000)
        case .completed: toCompleted.append(Double((event.time - enqueued[run]!).micros) / 1000)
        default: break
        }
        return true
      }
      toRunning.sort()
      toCompleted.sort()
      clientToCompleted.sort()
      print(
        String(
          format:
            "  latency, idle, %d runs one at a time (event timestamps): enqueue->Running p50 %.2f ms p99 %.2f ms; enqueue->Completed p50 %.2f ms p99 %.2f ms",
          latencyRuns, percentile(toRunning, 0.5), percentile(toRunning, 0.99), percentile(toCompleted, 0.5),
          percentile(toCompleted, 0.99)))
      print(
        String(
          format: "  seen by the client (enqueue call to Completed observed): p50 %.2f ms p99 %.2f ms",
          percentile(clientToCompleted, 0.5), percentile(clientToCompleted, 0.99)))
    }
  }
}

/// What the metrics of `/metrics` cost the hot path: the backlog of ``benchEndToEnd`` drained with
/// the queue's metrics off and on (swift-prometheus, as `gps server start` has them), interleaved
/// in one run so both see the same load.
func benchMetricsCost(directory: String, runs: Int, concurrency: Int, repetitions: Int) async throws {
  let root = URL(fileURLWithPath: freshDirectory(directory + "/objects-metrics"))
  try Data("hello".utf8).write(to: root.appendingPathComponent("a"))
  let quiet = Logger(label: "gps.bench", factory: { _ in SwiftLogNoOpLogHandler() })
  print("\nmetrics: a backlog of server-flow drained with the queue's metrics off and on, interleaved")
  try await withRunningServices(objectRoot: root, logger: quiet) { a, b in
    try await withServiceClients(a: a, b: b) { clients in
      var rates: [Bool: [Double]] = [:]
      var cpu: [Bool: [Double]] = [:]
      for repetition in 0..<(2 * repetitions) {
        // off, on, on, off, …: neither always goes first.
        let measured = (repetition % 4 == 1) || (repetition % 4 == 2)
        let data = freshDirectory(directory + "/e2e-metrics")
        var options = QueueOptions()
        if measured { options.metrics = WebMetrics().factory }
        let queue = try RunQueue(directory: data, options: options)
        try await enqueueRuns(runs, of: ServerFlow.deployment, parametersJSON: sampleParameters, into: queue)
        let start = ContinuousClock.now
        let usageBefore = ProcessUsage.now
        try await drain(
          queue, runs: runs, registry: .standard, dependencies: Dependencies(clients), concurrency: concurrency,
          logger: quiet)
        rates[measured, default: []].append(Double(runs) / (ContinuousClock.now - start).seconds)
        cpu[measured, default: []].append(((ProcessUsage.now - usageBefore) / runs).cpuMicros)
        queue.close(writingSnapshot: false)
      }
      print(
        String(
          format:
            "  backlog drained (%d runs, %d repetitions each): metrics off %.0f runs/s (%.0f us CPU per run), on %.0f runs/s (%.0f us CPU per run) = %.2f of off",
          runs, repetitions, median(rates[false]!), median(cpu[false]!), median(rates[true]!), median(cpu[true]!),
          median(rates[true]!) / median(rates[false]!)))
    }
  }
}

/// The snippet's parameters, as every end-to-end run gets them.
let sampleParameters = #"{"\#(ServerFlow.parameterName)": \#(ServerFlow.sampleDataInfoJSON)}"#

/// The same two calls a run of server-flow makes, `concurrency` pipelines at a time, without GPS:
/// with the metadata a step sends (idempotency key and `grpc-timeout`) and no local timer, as the
/// scheduler's steps.
private func callsAlone(
  _ runs: Int, dataInfo: Gps_V1_DataInfo, clients: ServiceClients, concurrency: Int
) async throws {
  try await withThrowingTaskGroup(of: Void.self) { group in
    for worker in 0..<concurrency {
      group.addTask {
        for index in stride(from: worker, to: runs, by: concurrency) {
          let manifest = try await clients.a.prepare(
            dataInfo, metadata: .stepCall(idempotencyKey: "bench-\(index)/prepare/1", timeout: .seconds(30)))
          _ = try await clients.b.process(
            manifest, metadata: .stepCall(idempotencyKey: "bench-\(index)/process/1", timeout: .seconds(30)))
        }
      }
    }
    try await group.waitForAll()
  }
}

/// server-flow with A and B as their own processes (`gps server a`, `gps server b`), as they are
/// deployed: the calls alone, then a backlog drained by the scheduler in this process. CPU per run
/// counts all three processes.
func benchEndToEndSeparateServices(directory: String, runs: Int, concurrency: Int, repetitions: Int) async throws {
  let gps = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("gps")
  let root = freshDirectory(directory + "/objects-separate")
  try Data("hello".utf8).write(to: URL(fileURLWithPath: root + "/a"))
  let a = try ServerProcess(gps: gps.path, command: ["server", "a"], arguments: ["--object-root", root])
  let b = try ServerProcess(gps: gps.path, command: ["server", "b"], arguments: [])
  let quiet = Logger(label: "gps.bench", factory: { _ in SwiftLogNoOpLogHandler() })
  let parameters = sampleParameters
  let dataInfo = try ServerFlow.decodeDataInfo(ServerFlow.sampleDataInfoJSON)
  print("\nend to end, A and B as separate processes (gps server a, gps server b), every event durable")
  let cpu = { ProcessUsage.now.cpuMicros + (a.cpuSeconds + b.cpuSeconds) * 1e6 }
  try await withServiceClients(
    a: try ServiceAddress(parsing: a.address, what: "A"), b: try ServiceAddress(parsing: b.address, what: "B")
  ) { clients in
    var callRates: [Double] = []
    var callCPU: [Double] = []
    var drainRates: [Double] = []
    var drainCPU: [Double] = []
    for _ in 0..<repetitions {
      var start = ContinuousClock.now
      var cpuBefore = cpu()
      try await callsAlone(runs, dataInfo: dataInfo, clients: clients, concurrency: concurrency)
      callRates.append(Double(runs) / (ContinuousClock.now - start).seconds)
      callCPU.append((cpu() - cpuBefore) / Double(runs))

      let data = freshDirectory(directory + "/e2e-separate")
      let queue = try RunQueue(directory: data)
      try await enqueueRuns(runs, of: ServerFlow.deployment, parametersJSON: parameters, into: queue)
      start = ContinuousClock.now
      cpuBefore = cpu()
      try await drain(
        queue, runs: runs, registry: .standard, dependencies: Dependencies(clients), concurrency: concurrency,
        logger: quiet)
      drainRates.append(Double(runs) / (ContinuousClock.now - start).seconds)
      drainCPU.append((cpu() - cpuBefore) / Double(runs))
      queue.close(writingSnapshot: false)
    }
    print(
      String(
        format:
          "  the calls alone: %.0f runs/s (%.0f us CPU per run, all three processes); backlog drained: %.0f completed runs/s (%d runs, scheduler concurrency %d; %.0f us CPU per run) = %.2f of the calls alone",
        median(callRates), median(callCPU), median(drainRates), runs, concurrency, median(drainCPU),
        median(drainRates) / median(callRates)))
  }
  await a.stop()
  await b.stop()
}

/// Enqueues `count` runs of `deployment` from 16 concurrent clients.
func enqueueRuns(
  _ count: Int, of deployment: Deployment, parametersJSON: String, into queue: RunQueue
) async throws {
  try await withThrowingTaskGroup(of: Void.self) { enqueuers in
    for client in 0..<16 {
      enqueuers.addTask {
        for _ in stride(from: client, to: count, by: 16) {
          _ = try await queue.enqueue(try deployment.enqueueRequest(parametersJSON: parametersJSON))
        }
      }
    }
    try await enqueuers.waitForAll()
  }
}

/// Runs a scheduler on `queue` (while `meanwhile` runs too) until `runs` runs have ended; every
/// one must have completed.
func drain(
  _ queue: RunQueue, runs: Int, registry: DeploymentRegistry, dependencies: Dependencies, concurrency: Int,
  logger: Logger, meanwhile: () async throws -> Void = {}
) async throws {
  let scheduler = Scheduler(
    queue: queue, registry: registry, dependencies: dependencies,
    options: SchedulerOptions(id: "bench", concurrency: concurrency), logger: logger)
  try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await scheduler.run() }
    try await meanwhile()
    while queue.counts[.completed] + queue.counts[.failed] < runs {
      // Not more often: each sleep costs this process a timer and wake-ups that would count as the
      // scheduler's.
      try await Task.sleep(for: .milliseconds(10))
    }
    group.cancelAll()
  }
  precondition(queue.counts[.completed] == runs, "runs failed: \(queue.counts)")
}

/// CPU time and context switches of this process (getrusage), for costs per run.
struct ProcessUsage {
  var cpuMicros: Double
  var switches: Double

  static var now: ProcessUsage {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let micros = { (time: timeval) in Double(time.tv_sec) * 1e6 + Double(time.tv_usec) }
    return ProcessUsage(
      cpuMicros: micros(usage.ru_utime) + micros(usage.ru_stime), switches: Double(usage.ru_nvcsw + usage.ru_nivcsw))
  }

  static func - (lhs: ProcessUsage, rhs: ProcessUsage) -> ProcessUsage {
    ProcessUsage(cpuMicros: lhs.cpuMicros - rhs.cpuMicros, switches: lhs.switches - rhs.switches)
  }

  static func / (lhs: ProcessUsage, count: Int) -> ProcessUsage {
    ProcessUsage(cpuMicros: lhs.cpuMicros / Double(count), switches: lhs.switches / Double(count))
  }
}

/// The scheduler's own cost: a backlog of runs drained through two steps that return at once (no
/// gRPC), every event durable. `gps-bench --only scheduler` runs just this, for profiling.
func benchSchedulerAlone(directory: String, runs: Int, concurrency: Int, repetitions: Int) async throws {
  let quiet = Logger(label: "gps.bench", factory: { _ in SwiftLogNoOpLogHandler() })
  let noop = Deployment(
    name: "noop/bench",
    flow: Flow(
      name: "noop", parameters: ServerFlow.parameters,
      steps: [
        Step("first") { context in try context.parameter(ServerFlow.parameterName, as: Gps_V1_DataInfo.self) },
        Step("second") { context in try context.result(of: "first", as: Gps_V1_DataInfo.self) },
      ], descriptors: .gps))
  var noopRates: [Double] = []
  var noopUsage: [ProcessUsage] = []
  for _ in 0..<repetitions {
    let data = freshDirectory(directory + "/e2e-noop")
    let queue = try RunQueue(directory: data)
    try await enqueueRuns(runs, of: noop, parametersJSON: sampleParameters, into: queue)
    let start = ContinuousClock.now
    let usageBefore = ProcessUsage.now
    try await drain(
      queue, runs: runs, registry: DeploymentRegistry([noop]), dependencies: Dependencies(),
      concurrency: concurrency, logger: quiet)
    noopRates.append(Double(runs) / (ContinuousClock.now - start).seconds)
    noopUsage.append((ProcessUsage.now - usageBefore) / runs)
    queue.close(writingSnapshot: false)
  }
  print(
    String(
      format:
        "  the scheduler alone (two steps that return at once, no gRPC): %.0f completed runs/s (%.0f us CPU, %.1f context switches per run)",
      median(noopRates), median(noopUsage.map(\.cpuMicros)), median(noopUsage.map(\.switches))))
}
