import Flows
import Foundation
import GPSModel
import GPSServerTesting
import GPSTesting
import PostgresStore
import Queue
import RPC
import SwiftProtobuf

/// The log on PostgreSQL against the file log and against PostgreSQL's own ceiling, in one run, on
/// a PostgreSQL server started here (Debian's, fsync and synchronous_commit on, as shipped):
/// pgbench's single-row insert + commit transactions/s (the ceiling a store that commits every
/// write alone would have), then durable enqueues/s into a queue whose every batch is one insert
/// (group commit), and the same into the file log (fsync always).
func benchStore(directory: String, seconds: Double, repetitions: Int) async throws {
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
    for repetition in 0..<repetitions {
      let files = try RunQueue(directory: freshDirectory(directory + "/file-log"))
      fileRates.append(try await enqueueFor(seconds: seconds, clients: clients, into: files))
      files.close()

      let database = "bench_\(clients)_\(repetition)"
      try server.psql("CREATE DATABASE \(database)", database: "postgres")
      let store = try await PostgresStore.open(
        try StoreLocation(url: server.url(database: database)), password: .file(server.passwordFile))
      guard let epoch = try await store.acquire(serverID: "bench", address: "bench", lease: .seconds(600)) else {
        throw BenchFailure("could not lead the bench's store")
      }
      var options = QueueOptions()
      options.log.fsync = .none
      options.log.store = EpochWriter(store: store, epoch: epoch, serverID: "bench")
      let queue = try RunQueue(directory: freshDirectory(directory + "/store-copy"), options: options)
      storeRates.append(try await enqueueFor(seconds: seconds, clients: clients, into: queue))
      queue.close()
      store.close()
    }
    let pgbench = ceiling[16] ?? 1
    print(
      String(
        format:
          "  durable enqueues, %3d concurrent: PostgreSQL %7.0f/s (%.1fx pgbench's 16-client commits/s), file log %7.0f/s (PostgreSQL/file %.2f)",
        clients, median(storeRates), median(storeRates) / pgbench, median(fileRates),
        median(storeRates) / median(fileRates)))
  }
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
