import Flows
import Foundation
import GPSModel
import GPSServerTesting
import GPSTesting
import Logging
import PostgresStore
import Queue
import RPC
import ReferenceFlow
import Services
import SwiftProtobuf
import Synchronization

/// The log on PostgreSQL against the file log and against PostgreSQL's own ceiling, in one run, on
/// a PostgreSQL server started here (Debian's, fsync and synchronous_commit on, as shipped):
/// pgbench's single-row insert + commit transactions/s (the ceiling a store that commits every
/// write alone would have), then durable enqueues/s into a queue whose every batch is one insert
/// (group commit), and the same into the file log (fsync always).
func benchStore(directory: String, seconds: Double, repetitions: Int, runs: Int, concurrency: Int) async throws {
  let server = try PostgresServer.start()
  defer { server.stop() }
  print("\nthe log on PostgreSQL (a server of this run's own: fsync on, synchronous_commit on)")
  try server.psql("CREATE TABLE bench_rows (id bigserial PRIMARY KEY, v text NOT NULL)")
  let script = directory + "/insert.sql"
  try Data("INSERT INTO bench_rows (v) VALUES ('an event of about this size, like a run enqueued');\n".utf8)
    .writeInPlace(to: URL(fileURLWithPath: script))
  var ceiling: [Int: Double] = [:]
  for clients in [1, 16, 64] {
    var rates: [Double] = []
    for _ in 0..<repetitions {
      let output = try PostgresServer.run(
        "/usr/bin/pgbench",
        [
          "-n", "-c", "\(clients)", "-j", "\(min(clients, 2))", "-T", "\(max(1, Int(seconds)))", "-f", script, "-h",
          "127.0.0.1", "-p", "\(server.port)", "-U", server.user, "gps",
        ], asServerUser: false, environment: ["PGPASSWORD": server.password])
      guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("tps = ") }),
        let value = Double(line.dropFirst("tps = ".count).prefix { $0 != " " })
      else { throw BenchFailure("pgbench said: \(output.suffix(500))") }
      rates.append(value)
    }
    ceiling[clients] = median(rates)
    print(
      String(format: "  pgbench, single-row insert + commit, %3d clients: %8.0f transactions/s", clients, median(rates))
    )
  }

  for clients in [16, 256] {
    var fileRates: [Double] = []
    var storeRates: [Double] = []
    var perBatch: [Double] = []
    for repetition in 0..<repetitions {
      let files = try RunQueue(directory: freshDirectory(directory + "/file-log"))
      fileRates.append(try await enqueueFor(seconds: seconds, clients: clients, into: files))
      files.close()

      let (queue, store) = try await leadingStoreQueue(
        on: server, database: "bench_\(clients)_\(repetition)", directory: directory + "/store-copy")
      storeRates.append(try await enqueueFor(seconds: seconds, clients: clients, into: queue))
      queue.close()
      store.close()
      // Group commit at work: the events each committed batch carried, from the store's rows.
      let batches = try server.psql(
        "SELECT (sum(last_seq - first_seq + 1)::float8 / count(*))::numeric(10,1) FROM gps_batches",
        database: "bench_\(clients)_\(repetition)")
      perBatch.append(Double(batches) ?? 0)
    }
    let pgbench = ceiling[16] ?? 1
    print(
      String(
        format:
          "  durable enqueues, %3d concurrent: PostgreSQL %7.0f/s (%.1fx pgbench's 16-client commits/s, %.1fx its 1-client; %.1f events a batch), file log %7.0f/s (PostgreSQL/file %.2f)",
        clients, median(storeRates), median(storeRates) / pgbench, median(storeRates) / (ceiling[1] ?? 1),
        median(perBatch), median(fileRates), median(storeRates) / median(fileRates)))
  }
  try await benchStoreEndToEnd(
    server: server, directory: directory, runs: runs, concurrency: concurrency, repetitions: repetitions)
  try await benchStandbyLag(server: server, directory: directory, rate: 1000, seconds: max(5, seconds * 2))
}

/// A queue on a new database of `server` as its store, leading it (epoch 1), with its local copy
/// in `directory` (no fsync: the store is where it is durable, as `gps server start --store` runs).
func leadingStoreQueue(on server: PostgresServer, database: String, directory: String) async throws -> (
  RunQueue, PostgresStore
) {
  try server.psql("CREATE DATABASE \(database)", database: "postgres")
  let store = try await PostgresStore.open(
    try StoreLocation(url: server.url(database: database)), password: .file(server.passwordFile))
  guard let epoch = try await store.acquire(serverID: "bench", address: "bench", lease: .seconds(600)) else {
    throw BenchFailure("could not lead the bench's store")
  }
  var options = QueueOptions()
  options.log.fsync = .none
  options.log.store = EpochWriter(store: store, epoch: epoch, serverID: "bench")
  return (try RunQueue(directory: freshDirectory(directory), options: options), store)
}

/// The seed's two-step flow end to end on each store, in one run, with A and B in-process and
/// every event durable (on PostgreSQL: committed there; on files: fsync always): a backlog of `runs`
/// drained by a scheduler in this process, and the same runs enqueued by 16 clients while it works
/// (from the first enqueue to the last completion). Then DBOS 3.4 on the same PostgreSQL server with
/// the same two calls per workflow (scripts/bench-dbos.py, from the venv `make bench` prepares).
func benchStoreEndToEnd(
  server: PostgresServer, directory: String, runs: Int, concurrency: Int, repetitions: Int
) async throws {
  let root = URL(fileURLWithPath: freshDirectory(directory + "/objects"))
  try Data("hello".utf8).write(to: root.appendingPathComponent("a"))
  let quiet = Logger(label: "gps.bench", factory: { _ in SwiftLogNoOpLogHandler() })
  try await withRunningServices(objectRoot: root, logger: quiet) { a, b in
    var together: Double = 0
    try await withServiceClients(a: a, b: b) { clients in
      for concurrentEnqueue in [false, true] {
        var fileRates: [Double] = []
        var storeRates: [Double] = []
        for repetition in 0..<repetitions {
          for onStore in [false, true] {
            let (queue, store): (RunQueue, PostgresStore?) =
              onStore
              ? try await leadingStoreQueue(
                on: server, database: "e2e_\(concurrentEnqueue)_\(repetition)", directory: directory + "/e2e-copy")
              : (try RunQueue(directory: freshDirectory(directory + "/e2e-files")), nil)
            let enqueueAll = {
              try await enqueueRuns(runs, of: ServerFlow.deployment, parametersJSON: sampleParameters, into: queue)
            }
            if !concurrentEnqueue { try await enqueueAll() }
            let start = ContinuousClock.now
            try await drain(
              queue, runs: runs, registry: .standard, dependencies: Dependencies(clients), concurrency: concurrency,
              logger: quiet, meanwhile: concurrentEnqueue ? enqueueAll : {})
            let rate = Double(runs) / (ContinuousClock.now - start).seconds
            if onStore { storeRates.append(rate) } else { fileRates.append(rate) }
            queue.close(writingSnapshot: false)
            store?.close()
          }
        }
        if concurrentEnqueue { together = median(storeRates) }
        print(
          String(
            format:
              "  end to end, server-flow (A and B in-process), %d runs, scheduler concurrency %d, %@: PostgreSQL %.0f completed runs/s, file log %.0f/s (PostgreSQL/file %.2f)",
            runs, concurrency, concurrentEnqueue ? "enqueued by 16 clients meanwhile" : "backlog drained",
            median(storeRates), median(fileRates), median(storeRates) / median(fileRates)))
      }
    }
    try await benchDBOS(server: server, a: a, b: b, runs: 1000, repetitions: min(repetitions, 3), gps: together)
  }
}

/// DBOS 3.4 (scripts/bench-dbos.py in the venv's Python) on a new database of `server`: its
/// durable workflows/s beside GPS's `gps` completed runs/s on PostgreSQL, measured alike.
func benchDBOS(
  server: PostgresServer, a: ServiceAddress, b: ServiceAddress, runs: Int, repetitions: Int, gps: Double
) async throws {
  let python = ProcessInfo.processInfo.environment["GPS_BENCH_PYTHON"] ?? ".build-venv/bin/python"
  guard FileManager.default.isExecutableFile(atPath: python),
    FileManager.default.fileExists(atPath: "scripts/bench-dbos.py")
  else {
    print("  DBOS: skipped (no \(python) or scripts/bench-dbos.py here; run from the repository after `make venv`)")
    return
  }
  var rates: [Double] = []
  for repetition in 0..<repetitions {
    let database = "dbos_\(repetition)"
    try server.psql("CREATE DATABASE \(database)", database: "postgres")
    let arguments = [
      "scripts/bench-dbos.py", "--database-url",
      "postgresql://\(server.user):\(server.password)@127.0.0.1:\(server.port)/\(database)", "--a", "\(a)", "--b",
      "\(b)", "--runs", "\(runs)",
    ]
    // On a thread of its own: services A and B answer DBOS's calls from this process's pool.
    let result = await withCheckedContinuation { (done: CheckedContinuation<Result<String, any Error>, Never>) in
      Thread { done.resume(returning: Result { try PostgresServer.run(python, arguments, asServerUser: false) }) }
        .start()
    }
    let output: String
    switch result {
    case .success(let text): output = text
    case .failure(let error):
      print("  DBOS: skipped (\(error))")
      return
    }
    guard let line = output.split(separator: "\n").last(where: { $0.hasPrefix("dbos ") }),
      let rate = line.split(separator: " ").dropLast().last.flatMap({ Double($0) })
    else {
      print("  DBOS: skipped (scripts/bench-dbos.py said: \(output.suffix(300)))")
      return
    }
    rates.append(rate)
  }
  print(
    String(
      format:
        "  DBOS 3.4, the same two calls per workflow, %d workflows started at once on the same PostgreSQL: %.1f durable workflows/s; GPS on PostgreSQL (enqueued meanwhile) %.0f runs/s = %.0fx DBOS",
      runs, median(rates), gps, gps / median(rates)))
}

/// How far behind the leader a hot standby is: a leader on PostgreSQL takes `rate` enqueues per
/// second (paced, from 8 clients) for `seconds`; a standby queue follows the store as
/// `gps server start --store` does (LISTEN/NOTIFY, then reading the batches after its last). For
/// each enqueue, the time from its acknowledgement to the standby having applied it.
func benchStandbyLag(server: PostgresServer, directory: String, rate: Int, seconds: Double) async throws {
  let (leader, store) = try await leadingStoreQueue(on: server, database: "lag", directory: directory + "/lag-leader")
  defer {
    leader.close()
    store.close()
  }
  var options = QueueOptions()
  options.standby = true
  options.log.fsync = .none
  let standby = try RunQueue(directory: freshDirectory(directory + "/lag-standby"), options: options)
  defer { standby.close() }
  // When the standby had applied everything below each `followingFrom`.
  let applied = AppliedMarks()
  let total = Int(Double(rate) * seconds)
  let acknowledged = try await withThrowingTaskGroup(of: [(UInt64, ContinuousClock.Instant)].self) { group in
    let wake = WakeSignal()
    group.addTask {
      while !Task.isCancelled {
        try? await store.listenForBatches { wake.signal() }
        try? await Task.sleep(for: .milliseconds(100))
      }
      return []
    }
    group.addTask {
      while !Task.isCancelled {
        let batches = try await store.batches(after: standby.followingFrom - 1)
        if batches.isEmpty {
          await wake.wait(timeout: .seconds(1))
          continue
        }
        try standby.follow(batches)
        let now = ContinuousClock.now
        applied.list.withLock { $0.append((now, standby.followingFrom)) }
      }
      return []
    }
    let start = ContinuousClock.now
    var sent: [[(UInt64, ContinuousClock.Instant)]] = []
    try await withThrowingTaskGroup(of: [(UInt64, ContinuousClock.Instant)].self) { clients in
      for client in 0..<8 {
        clients.addTask {
          var mine: [(UInt64, ContinuousClock.Instant)] = []
          for index in stride(from: client, to: total, by: 8) {
            try await Task.sleep(until: start + .seconds(Double(index) / Double(rate)))
            var request = EnqueueRequest(deployment: "bench/enqueue", flow: "bench", parametersJSON: #"{"x":1}"#)
            request.parameters = [RunParameter(name: "x", type: "bench.X", value: [8, 1])]
            let run = try await leader.enqueue(request).run
            mine.append((run.lastSequence, ContinuousClock.now))
          }
          return mine
        }
      }
      for try await mine in clients { sent.append(mine) }
    }
    let last = leader.durableSequence
    while standby.followingFrom <= last { try await Task.sleep(for: .milliseconds(5)) }
    group.cancelAll()
    return sent.flatMap { $0 }
  }
  let elapsed = acknowledged.map(\.1).max()! - acknowledged.map(\.1).min()!
  let marks = applied.list.withLock { $0 }
  var lags: [Double] = []
  for (sequence, at) in acknowledged {
    // The first time the standby had applied the sequence (marks are in time order).
    guard let mark = marks.first(where: { $0.1 > sequence }) else { continue }
    lags.append(max(0, (mark.0 - at).seconds * 1000))
  }
  lags.sort()
  print(
    String(
      format:
        "  hot standby's lag at %.0f acknowledged enqueues/s on the leader (%d enqueues): p50 %.2f ms, p99 %.2f ms, max %.2f ms behind the acknowledgement",
      Double(acknowledged.count) / elapsed.seconds, acknowledged.count, percentile(lags, 0.5), percentile(lags, 0.99),
      lags.last ?? 0))
}

/// Enqueues from `clients` tasks for `seconds`; returns acknowledged (durable) enqueues per second.
private func enqueueFor(seconds: Double, clients: Int, into queue: RunQueue) async throws -> Double {
  let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
  let start = ContinuousClock.now
  let total = try await withThrowingTaskGroup(of: Int.self) { group in
    for client in 0..<clients {
      group.addTask {
        var count = 0
        while ContinuousClock.now < deadline {
          var request = EnqueueRequest(deployment: "bench/enqueue", flow: "bench", parametersJSON: #"{"x":1}"#)
          request.idempotencyKey = "c\(client)-\(count)"
          request.parameters = [RunParameter(name: "x", type: "bench.X", value: [8, 1])]
          _ = try await queue.enqueue(request)
          count += 1
        }
        return count
      }
    }
    return try await group.reduce(0, +)
  }
  return Double(total) / (ContinuousClock.now - start).seconds
}

struct BenchFailure: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}

/// Failover as users see it: two `gps server start --store` processes (the release binary beside
/// gps-bench) with the default lease; the leader is SIGKILLed and a client enqueues to the standby
/// until one is acknowledged. The time from the kill to that acknowledgement, per repetition.
func benchFailover(directory: String, repetitions: Int) async throws {
  let gps = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("gps")
    .path
  guard FileManager.default.isExecutableFile(atPath: gps) else {
    print("\nfailover: skipped (no gps binary beside gps-bench; build the gps product in release too)")
    return
  }
  let server = try PostgresServer.start()
  defer { server.stop() }
  let request = Gps_V1_EnqueueRunRequest.with {
    $0.deployment = "server-flow/MyPrefectDeployer"
    $0.parametersJson = #"{"data_info": {"object_storage_urls": ["a"], "dataset": "b"}}"#
  }
  var times: [Double] = []
  for repetition in 0..<repetitions {
    let database = "failover_\(repetition)"
    try server.psql("CREATE DATABASE \(database)", database: "postgres")
    func start(_ name: String) throws -> ServerProcess {
      try ServerProcess(
        gps: gps,
        arguments: [
          "--data-dir", freshDirectory(directory + "/failover-\(name)"), "--no-scheduler", "--store",
          server.url(database: database), "--store-password-file", server.passwordFile,
        ])
    }
    let leader = try start("one")
    defer { if leader.process.isRunning { kill(leader.process.processIdentifier, SIGKILL) } }
    try await acknowledged(request, at: leader.address, within: .seconds(30))
    let standby = try start("two")
    defer { standby.process.terminate() }
    kill(leader.process.processIdentifier, SIGKILL)
    let killed = ContinuousClock.now
    try await acknowledged(request, at: standby.address, within: .seconds(60))
    times.append((ContinuousClock.now - killed).seconds)
    standby.process.terminate()
    standby.process.waitUntilExit()
  }
  print(
    String(
      format:
        "\nfailover (default lease %@): leader SIGKILLed to the first acknowledged enqueue on the standby: median %.2f s (min %.2f, max %.2f; %d runs)",
      "4s", median(times), times.min() ?? 0, times.max() ?? 0, times.count))
}

/// Enqueues `request` at `address` until the server acknowledges it (a standby refuses until it
/// leads), or throws after `within`.
private func acknowledged(_ request: Gps_V1_EnqueueRunRequest, at address: String, within: Duration) async throws {
  let deadline = ContinuousClock.now + within
  try await withControlClient(try ServiceAddress(parsing: address, what: "address")) { control in
    while true {
      do {
        _ = try await control.enqueue(request)
        return
      } catch {
        guard ContinuousClock.now < deadline else { throw error }
        try await Task.sleep(for: .milliseconds(10))
      }
    }
  }
}

/// When a standby had applied everything below each `followingFrom` it reached.
private final class AppliedMarks: Sendable {
  let list = Mutex<[(ContinuousClock.Instant, UInt64)]>([])
}
