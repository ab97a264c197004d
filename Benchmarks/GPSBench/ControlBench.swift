import Control
import Flows
import Foundation
import GPSModel
import GRPCCore
import GRPCNIOTransportHTTP2
import Queue
import RPC
import SwiftProtobuf
import Synchronization

/// `gps server start` as users run it (the release binary beside gps-bench, a child process):
/// durable enqueues per second through the control API from `clients` concurrent clients, its
/// time to ready on an empty directory and with `startupRuns` runs, and its resident memory.
func benchControl(directory: String, clients: Int, seconds: Double, startupRuns: Int, repetitions: Int) async throws {
  let gps = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("gps")
    .path
  guard FileManager.default.isExecutableFile(atPath: gps) else {
    print("\ncontrol server: skipped (no gps binary beside gps-bench; build the gps product in release too)")
    return
  }
  print("\ncontrol server (`gps server start --no-scheduler`, a separate process), \(clients) concurrent clients")
  let request = Gps_V1_EnqueueRunRequest.with {
    $0.deployment = "server-flow/MyPrefectDeployer"
    $0.parametersJson = #"{"data_info": {"object_storage_urls": ["a"], "dataset": "b"}}"#
  }
  // Unary calls, then one stream per client with 1 and with 8 requests in flight.
  for (streaming, window) in [(false, 1), (true, 1), (true, 8)] {
    var rates: [Double] = []
    var perBatch: [Double] = []
    var limits: [Double] = []
    var serverCPU: [Double] = []
    for _ in 0..<repetitions {
      let data = freshDirectory(directory + "/control")
      let server = try ServerProcess(gps: gps, arguments: ["--data-dir", data, "--no-scheduler"])
      let load = LoadState()
      let cpuBefore = server.cpuSeconds
      let start = ContinuousClock.now
      // Four connections, the clients spread over them.
      try await withThrowingTaskGroup(of: Void.self) { group in
        for connection in 0..<4 {
          group.addTask {
            try await withControlClient(try ServiceAddress(parsing: server.address, what: "address")) { control in
              try await withThrowingTaskGroup(of: Void.self) { clientsGroup in
                for _ in stride(from: connection, to: clients, by: 4) {
                  clientsGroup.addTask {
                    if streaming {
                      // `window` requests in flight per client: another goes as each is acknowledged.
                      let (acks, ack) = AsyncStream.makeStream(of: Void.self)
                      try await control.enqueueStream { writer in
                        var pending = acks.makeAsyncIterator()
                        for _ in 0..<window { try await writer.write(request) }
                        while !load.isStopped {
                          guard await pending.next() != nil else { return }
                          try await writer.write(request)
                        }
                      } onResponse: { response in
                        for try await message in response.messages {
                          precondition(message.errorCode.isEmpty, message.errorMessage)
                          load.acknowledge()
                          ack.yield()
                        }
                        ack.finish()
                      }
                    } else {
                      while !load.isStopped {
                        _ = try await control.enqueue(request)
                        load.acknowledge()
                      }
                    }
                  }
                }
                try await clientsGroup.waitForAll()
              }
            }
          }
        }
        group.addTask {
          try await Task.sleep(for: .seconds(seconds))
          load.stop()
        }
        try await group.waitForAll()
      }
      let elapsed = (ContinuousClock.now - start).seconds
      let count = load.acknowledged
      serverCPU.append((server.cpuSeconds - cpuBefore) / Double(max(1, count)) * 1e6)
      await server.stop()
      let report = try LogVerifier(directory: data).verify()
      precondition(report.records >= UInt64(count), "acknowledged \(count) runs but the log holds \(report.records)")
      rates.append(Double(count) / elapsed)
      let batchSize = Double(report.records) / Double(max(1, report.batches))
      perBatch.append(batchSize)
      limits.append(
        rawSyncsPerSecond(directory: data, size: report.bytes / max(1, report.batches), seconds: 2) * batchSize)
    }
    let label = streaming ? "EnqueueStream, \(window) in flight per client" : "Enqueue (unary)"
    print(
      "  \(label): "
        + String(
          format:
            "%.0f durable enqueues/s (%.1f per batch; server CPU %.0f us per enqueue); raw write+fdatasync limit for such batches: %.0f/s",
          median(rates), median(perBatch), median(serverCPU), median(limits)))
  }

  // Time to ready (from spawning the process to its `listening on` line) and resident memory
  // after a second of idling.
  func startAndMeasure(_ data: String) async throws -> (ready: Double, resident: Double, printed: String) {
    let start = ContinuousClock.now
    let server = try ServerProcess(gps: gps, arguments: ["--data-dir", data, "--no-scheduler"])
    let ready = (ContinuousClock.now - start).seconds
    try await Task.sleep(for: .seconds(1))
    let resident = Double(server.residentBytes) / 1e6
    let printed = server.printed
    await server.stop()
    return (ready, resident, printed)
  }
  var empty: [(ready: Double, resident: Double, printed: String)] = []
  for _ in 0..<repetitions { empty.append(try await startAndMeasure(freshDirectory(directory + "/control-empty"))) }
  print(
    String(
      format: "  start on an empty directory: ready in %.3f s; idle resident memory %.1f MB",
      median(empty.map(\.ready)), median(empty.map(\.resident))))
  let big = freshDirectory(directory + "/control-big")
  _ = try await writeCompletedRuns(directory: big, runs: startupRuns)
  _ = try LogReader(directory: big).read { _ in }  // the log in the page cache
  let replay = try await startAndMeasure(big)  // replays the whole log, writes a snapshot at exit
  var fromSnapshot: [(ready: Double, resident: Double, printed: String)] = []
  for _ in 0..<repetitions { fromSnapshot.append(try await startAndMeasure(big)) }
  print(
    String(
      format:
        "  start with %d completed runs: ready in %.3f s replaying the whole log (resident %.0f MB), %.3f s from its snapshot (resident %.0f MB)",
      startupRuns, replay.ready, replay.resident, median(fromSnapshot.map(\.ready)),
      median(fromSnapshot.map(\.resident))))
  print("  the server's own account: \(fromSnapshot.last?.printed.split(separator: "\n").last ?? "")")
  try? FileManager.default.removeItem(atPath: big)
}

/// Shared by the load's clients: how many enqueues were acknowledged, and when to stop.
final class LoadState: Sendable {
  private let acknowledgedCount = Atomic<Int>(0)
  private let stopped = Atomic<Bool>(false)

  func acknowledge() { acknowledgedCount.add(1, ordering: .relaxed) }
  var acknowledged: Int { acknowledgedCount.load(ordering: .relaxed) }
  func stop() { stopped.store(true, ordering: .relaxed) }
  var isStopped: Bool { stopped.load(ordering: .relaxed) }
}

/// `gps COMMAND --port 0 ARGUMENTS` (by default `server start`), running until ``stop()``.
final class ServerProcess: Sendable {
  let process: Process
  let address: String
  let output: URL

  init(gps: String, command: [String] = ["server", "start"], arguments: [String]) throws {
    output = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("gps-bench-\(UUID().uuidString)")
    _ = FileManager.default.createFile(atPath: output.path, contents: nil)
    process = Process()
    process.executableURL = URL(fileURLWithPath: gps)
    process.arguments =
      command + ["--port", "0", "--log-level", "warning"]
      + (command == ["server", "start"] && !arguments.contains("--http-port") ? ["--no-web"] : []) + arguments
    process.standardOutput = try FileHandle(forWritingTo: output)
    process.standardError = FileHandle.nullDevice
    try process.run()
    var found: String?
    while found == nil, process.isRunning {
      let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
      found = text.split(separator: "\n").first { $0.hasPrefix("listening on ") }.map { String($0.dropFirst(13)) }
      if found == nil { usleep(1000) }
    }
    guard let found else {
      throw QueueError(code: .io, message: "gps \(command.joined(separator: " ")) did not start")
    }
    address = found
  }

  /// What the server printed.
  var printed: String { (try? String(contentsOf: output, encoding: .utf8)) ?? "" }

  /// The server's "queue ready in …" line, once printed.
  var readyLine: String {
    printed.split(separator: "\n").first { $0.hasPrefix("queue ready") }.map(String.init) ?? "(not ready yet)"
  }

  /// CPU time the server has used (user + system), in seconds.
  var cpuSeconds: Double {
    guard let stat = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
      let close = stat.lastIndex(of: ")")
    else { return 0 }
    // Fields after the command name: state is field 3; utime and stime are fields 14 and 15.
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
  }

  var residentBytes: Int {
    guard let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
      let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
      let kilobytes = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    else { return 0 }
    return kilobytes * 1024
  }

  func stop() async {
    kill(process.processIdentifier, SIGTERM)
    while process.isRunning { try? await Task.sleep(for: .milliseconds(5)) }
    try? FileManager.default.removeItem(at: output)
  }
}
