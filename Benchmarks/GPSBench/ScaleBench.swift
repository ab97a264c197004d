import Foundation
import Queue
import SwiftProtobuf

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// History at scale (issue 16's figures): `runs` completed runs of `server-flow` and `active`
/// Scheduled ones, written through the queue's own commands (enqueue, claim, reports; fsync off
/// for the generation only), then `gps server start` (release, beside gps-bench) on them: its
/// resident memory, its time to ready after a clean stop and after SIGKILL, listing and inspecting
/// over its API, and the disk used per run.
func benchScale(directory: String, runs: Int, active: Int, repetitions: Int) async throws {
  guard let gps = gpsBesideBench(for: "scale") else { return }
  let data = freshDirectory(directory + "/scale")
  let generating = ContinuousClock.now
  var options = QueueOptions()
  options.log.fsync = .none
  let queue = try RunQueue(directory: data, options: options)
  let oldest = try await generateHistory(queue, runs: runs, active: active)
  queue.close()
  let generated = (ContinuousClock.now - generating).seconds
  let logBytes = directoryBytes(data + "/log")
  let otherBytes = directoryBytes(data) - logBytes
  print(
    String(
      format:
        "\nscale: %d completed runs and %d Scheduled, written through the queue's commands in %.0f s (%.0f runs/s); disk per run: %.0f bytes of log, %.0f bytes of everything else (snapshots)",
      runs, active, generated, Double(runs + active) / generated, Double(logBytes) / Double(runs + active),
      Double(otherBytes) / Double(runs + active)))

  func start() async throws -> (server: ServerProcess, ready: Double, base: String) {
    let spawned = ContinuousClock.now
    let server = try ServerProcess(gps: gps, arguments: ["--data-dir", data, "--no-scheduler", "--http-port", "0"])
    let ready = (ContinuousClock.now - spawned).seconds
    return (server, ready, try await server.webAddress())
  }

  // After a clean stop (the close above wrote a snapshot of everything).
  let (server, ready, base) = try await start()
  try await Task.sleep(for: .seconds(1))
  let resident = Double(server.residentBytes) / 1e6
  print(
    String(
      format: "  gps server start: ready in %.2f s after a clean stop; resident %.0f MB idle (%.0f bytes per run)",
      ready, resident, resident * 1e6 / Double(runs + active)))
  let firstTime = oldest.enqueuedAt
  let queries: [(String, String)] = [
    ("list, first page of 100", "/api/runs?limit=100"),
    ("list, Completed", "/api/runs?limit=100&state=Completed"),
    ("list, Scheduled (the active ones)", "/api/runs?limit=100&state=Scheduled"),
    ("list, by deployment", "/api/runs?limit=100&deployment=server-flow%2FMyPrefectDeployer"),
    ("list, by tag", "/api/runs?limit=100&tag=scale"),
    ("list, the first second of the history", "/api/runs?limit=100&enqueued_before=\(firstTime.micros + 1_000_000)"),
    ("list, a page from halfway (cursor)", "/api/runs?limit=100&cursor=\((runs + active) / 2)"),
    ("inspect the oldest run", "/api/runs/\(oldest.id)"),
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

  // After SIGKILL: the newest snapshot plus the log after it.
  kill(server.process.processIdentifier, SIGKILL)
  server.process.waitUntilExit()
  let (again, readyAfterKill, _) = try await start()
  print(String(format: "  gps server start: ready in %.2f s after SIGKILL", readyAfterKill))
  await again.stop()
  try? FileManager.default.removeItem(atPath: data)
}

/// Writes the history with 32 concurrent workers, each enqueueing a run, claiming one and
/// reporting it to Completed in one commit (the scheduler's own events); then `active` runs left
/// Scheduled. Returns the oldest run.
private func generateHistory(_ queue: RunQueue, runs: Int, active: Int) async throws -> Run {
  let parameters = #"{"data_info":{"object_storage_urls":["a"],"dataset":"b"}}"#
  func request(_ index: Int) -> EnqueueRequest {
    var request = EnqueueRequest(
      deployment: "server-flow/MyPrefectDeployer", flow: "server-flow", parametersJSON: parameters)
    request.tags = ["scale"]
    request.idempotencyKey = "scale-\(index)"
    return request
  }
  let first = try await queue.enqueue(request(0)).run
  try await withThrowingTaskGroup(of: Void.self) { group in
    for worker in 0..<32 {
      group.addTask {
        for index in stride(from: worker, to: runs, by: 32) {
          if index > 0 { _ = try await queue.enqueue(request(index)) }
          guard let claim = try await queue.claim(scheduler: "scale-\(worker)") else { continue }
          var events: [RunEvent.OneOf_Kind] = [.started(.init())]
          for step in ["prepare", "process"] {
            events.append(
              .attemptStarted(
                .with {
                  $0.step = step
                  $0.attempt = 1
                }))
            events.append(
              .attemptSucceeded(
                .with {
                  $0.step = step
                  $0.attempt = 1
                  $0.result = Data(repeating: 0x61, count: 70)
                  $0.durationMicros = 800
                }))
          }
          events.append(
            .completed(
              .with {
                $0.result = Data(repeating: 0x62, count: 70)
                $0.resultType = "gps.v1.Response"
              }))
          try await queue.report(claim.token, events)
        }
      }
    }
    try await group.waitForAll()
  }
  for index in 0..<active { _ = try await queue.enqueue(request(runs + index)) }
  return first
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
