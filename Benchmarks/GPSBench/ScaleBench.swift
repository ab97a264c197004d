import Foundation
import GPSModel
import GPSServerTesting
import Queue
import SwiftProtobuf
import Synchronization

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// History at scale (issue 16's figures): `runs` completed runs of `server-flow` and `active`
/// Scheduled ones, written through the queue's own commands (enqueue, claim, reports; fsync off
/// for the generation only), then `gps server start` (release, beside gps-bench) on them: its
/// resident memory, its time to ready after a clean stop and after SIGKILL, listing and inspecting
/// over its API, and the disk used per run.
func benchScale(directory: String, runs: Int, active: Int, repetitions: Int, keep: Bool) async throws {
  guard let gps = gpsBesideBench(for: "scale") else { return }
  let data = directory + "/scale"
  let marker = data + "/bench-history.json"
  let oldestID: String
  let firstTime: Timestamp
  let lastSequence: UInt64
  if keep, let kept = KeptHistory.load(marker), kept.runs == runs, kept.active == active {
    (oldestID, firstTime, lastSequence) = (kept.oldestID, Timestamp(micros: kept.firstMicros), kept.lastSequence)
    print("\nscale: reusing the history of \(runs) completed runs and \(active) Scheduled kept in \(data)")
  } else {
    _ = freshDirectory(data)
    let generating = ContinuousClock.now
    var options = QueueOptions()
    options.log.fsync = .none
    options.runIndex = RunIndexOptions()
    let queue = try RunQueue(directory: data, options: options)
    print(
      "\nscale: generating \(runs) completed runs and \(active) Scheduled through the queue's commands (run index on)")
    let oldest = try await HistoryGenerator.generate(queue, runs: runs, active: active) { done in
      // The generating process holds the same queue as a server: its memory must not grow either.
      // (A server ticks every second, which drops the lateness marks of runs long claimed.)
      _ = try? await queue.tick()
      try? queue.flushIndex()
      let inMemory = queue.withState { $0.runs.count }
      print(
        String(
          format: "  %d runs: generator resident %.0f MB, %d runs in memory", done,
          Double(residentBytes()) / 1e6, inMemory))
    }
    lastSequence = queue.durableSequence
    queue.close()
    (oldestID, firstTime) = (oldest.id.description, oldest.enqueuedAt)
    let generated = (ContinuousClock.now - generating).seconds
    print(
      String(
        format: "scale: %d completed runs and %d Scheduled, written in %.0f s (%.0f runs/s)", runs, active, generated,
        Double(runs + active) / generated))
    if keep {
      KeptHistory(
        runs: runs, active: active, oldestID: oldestID, firstMicros: firstTime.micros, lastSequence: lastSequence
      ).save(marker)
    }
  }
  let logBytes = directoryBytes(data + "/log")
  let indexBytes = directoryBytes(data + "/index")
  let otherBytes = directoryBytes(data) - logBytes - indexBytes
  let perRun = { (bytes: Int) in Double(bytes) / Double(runs + active) }
  print(
    String(
      format:
        "scale: disk per run: %.0f bytes of log, %.0f bytes of run index, %.0f bytes of everything else",
      perRun(logBytes), perRun(indexBytes), perRun(otherBytes)))

  func start() async throws -> (server: ServerProcess, ready: Double, base: String) {
    let spawned = ContinuousClock.now
    let server = try ServerProcess(gps: gps, arguments: ["--data-dir", data, "--no-scheduler", "--http-port", "0"])
    let ready = (ContinuousClock.now - spawned).seconds
    return (server, ready, try await server.webAddress())
  }

  // After a clean stop (the close above committed the index at the log's end).
  let (server, ready, base) = try await start()
  try await Task.sleep(for: .seconds(1))
  let resident = Double(server.residentBytes) / 1e6
  print("  " + server.readyLine)
  print(
    String(
      format: "  gps server start: ready in %.2f s after a clean stop; resident %.0f MB idle (%.0f bytes per run)",
      ready, resident, resident * 1e6 / Double(runs + active)))
  let queries: [(String, String)] = [
    // The client's own floor (URLSession over loopback), to read the rest against.
    ("GET /healthz (the client's floor)", "/healthz"),
    ("list, first page of 100", "/api/runs?limit=100"),
    ("list, Completed", "/api/runs?limit=100&state=Completed"),
    ("list, Scheduled (the active ones)", "/api/runs?limit=100&state=Scheduled"),
    ("list, by deployment", "/api/runs?limit=100&deployment=server-flow%2FMyPrefectDeployer"),
    ("list, by tag", "/api/runs?limit=100&tag=scale"),
    ("list, the first second of the history", "/api/runs?limit=100&enqueued_before=\(firstTime.micros + 1_000_000)"),
    ("list, a page from halfway (cursor)", "/api/runs?limit=100&cursor=\(lastSequence / 2)"),
    (
      "list, Completed by deployment and tag from halfway",
      "/api/runs?limit=100&state=Completed&deployment=server-flow%2FMyPrefectDeployer&tag=scale&cursor=\(lastSequence / 2)"
    ),
    ("inspect the oldest run", "/api/runs/\(oldestID)"),
  ]
  for (label, path) in queries {
    for _ in 0..<3 { _ = try await scaleFetch(base + path) }
    var times: [Double] = []
    for _ in 0..<(repetitions * 20) {
      let begun = ContinuousClock.now
      let status = try await scaleFetch(base + path)
      precondition(status == 200, "\(path): \(status)")
      times.append((ContinuousClock.now - begun).seconds * 1000)
    }
    times.sort()
    print(
      String(
        format: "  %@: p50 %.2f ms, p99 %.2f ms (client-observed over loopback)", label, percentile(times, 0.5),
        percentile(times, 0.99)))
  }

  // After SIGKILL in the middle of a flood of enqueues: the index's checkpoint plus the log after it.
  // Stopped by a flag, not by cancelling: cancelling a task whose URLSession request fails at the
  // same moment deadlocks FoundationNetworking on Linux (seen here: both threads in
  // withStatusRecordLock).
  let flooding = Mutex(true)
  let flood = Task {
    var sent = 0
    while flooding.withLock({ $0 }) {
      try await withThrowingTaskGroup(of: Void.self) { group in
        for _ in 0..<16 { group.addTask { _ = try? await scaleEnqueue(base) } }
        try await group.waitForAll()
      }
      sent += 16
    }
    return sent
  }
  try await Task.sleep(for: .seconds(2))
  kill(server.process.processIdentifier, SIGKILL)
  flooding.withLock { $0 = false }
  let sent = (try? await flood.value) ?? 0
  server.process.waitUntilExit()
  let (again, readyAfterKill, _) = try await start()
  try await Task.sleep(for: .milliseconds(200))
  print(
    String(
      format: "  gps server start: ready in %.2f s after SIGKILL during %d enqueues (%@)", readyAfterKill, sent,
      again.readyLine))
  await again.stop()
  if !keep { try? FileManager.default.removeItem(atPath: data) }
}

/// What the benchmark needs of a history it generated, kept beside it (`--scale-keep`).
private struct KeptHistory: Codable {
  var runs: Int
  var active: Int
  var oldestID: String
  var firstMicros: Int64
  var lastSequence: UInt64

  static func load(_ path: String) -> KeptHistory? {
    guard let data = FileManager.default.contents(atPath: path) else { return nil }
    return try? JSONDecoder().decode(KeptHistory.self, from: data)
  }

  func save(_ path: String) {
    try? JSONEncoder().encode(self).write(to: URL(fileURLWithPath: path))
  }
}

private func directoryBytes(_ path: String) -> Int {
  guard let enumerator = FileManager.default.enumerator(atPath: path) else { return 0 }
  var total = 0
  while let name = enumerator.nextObject() as? String {
    let attributes = try? FileManager.default.attributesOfItem(atPath: path + "/" + name)
    if attributes?[.type] as? FileAttributeType == .typeRegular { total += (attributes?[.size] as? Int) ?? 0 }
  }
  return total
}

private let scaleSession: URLSession = {
  let configuration = URLSessionConfiguration.ephemeral
  configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
  return URLSession(configuration: configuration)
}()

private func scaleFetch(_ url: String) async throws -> Int {
  let (_, response) = try await scaleSession.data(from: URL(string: url)!)
  return (response as? HTTPURLResponse)?.statusCode ?? 0
}

/// Enqueues one Scheduled run over the JSON API.
private func scaleEnqueue(_ base: String) async throws -> Int {
  var request = URLRequest(url: URL(string: base + "/api/runs")!)
  request.httpMethod = "POST"
  request.setValue("application/json", forHTTPHeaderField: "Content-Type")
  request.httpBody = Data(
    #"{"deployment":"server-flow/MyPrefectDeployer","parameters":{"data_info":{"object_storage_urls":["a"],"dataset":"b"}}}"#
      .utf8)
  let (_, response) = try await scaleSession.data(for: request)
  return (response as? HTTPURLResponse)?.statusCode ?? 0
}
