import Foundation
import GPSModel
import Queue

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// The web UI's pages and API over a queue of `runs` completed runs: `gps server start` (release,
/// beside gps-bench) as a separate process, each page fetched one at a time over loopback.
func benchWeb(directory: String, runs: Int, repetitions: Int) async throws {
  guard let gps = gpsBesideBench(for: "web") else { return }
  let data = freshDirectory(directory + "/web")
  // And one run of 10,000 events (5,000 step attempts), from halfway back, among the others'.
  _ = try await writeCompletedRuns(directory: data, runs: runs, longRunSteps: 4_998)
  let server = try ServerProcess(gps: gps, arguments: ["--data-dir", data, "--no-scheduler", "--http-port", "0"])
  defer { Task { await server.stop() } }
  let base = try await server.webAddress()
  let someRun = try await fetch(base + "/api/runs?limit=1").body
  let id =
    (try? JSONSerialization.jsonObject(with: Data(someRun.utf8)) as? [String: Any])
    .flatMap { ($0["runs"] as? [[String: Any]])?.first?["id"] as? String } ?? ""
  let long = RunID(bytes: benchRunID(index: runs))!.description
  let longEvents = try await fetch(base + "/api/runs/\(long)/events?limit=5000&after=0").body
  let middle =
    (try? JSONSerialization.jsonObject(with: Data(longEvents.utf8)) as? [String: Any])
    .flatMap { $0["next_after"] as? String } ?? "0"
  print("\nweb: \(runs) completed runs, `gps server start` in its own process; \(repetitions * 20) fetches per page")
  for (label, path) in [
    ("runs page, first page", "/runs"),
    ("runs page, filtered (state and deployment)", "/runs?state=Completed&deployment=server-flow%2FMyPrefectDeployer"),
    ("runs page, a filter nothing matches (every block of runs skipped)", "/runs?state=Failed"),
    ("API: runs, first page", "/api/runs?limit=50"),
    ("run page", "/runs/\(id)"),
    ("run page of a run of 10,000 events, from halfway back in the log", "/runs/\(long)"),
    ("API: its events, first page of 500", "/api/runs/\(long)/events?limit=500"),
    ("API: its events, the page after 5,000 (cursor)", "/api/runs/\(long)/events?limit=500&after=\(middle)"),
    ("API: the history, a page of 500 from halfway", "/api/history?limit=500&after=\(runs * 4)"),
  ] {
    for _ in 0..<3 { _ = try await fetch(base + path) }
    var times: [Double] = []
    for _ in 0..<(repetitions * 20) {
      let start = ContinuousClock.now
      let answer = try await fetch(base + path)
      precondition(answer.status == 200, "\(path): \(answer.status)")
      times.append((ContinuousClock.now - start).seconds * 1000)
    }
    times.sort()
    print(
      String(
        format: "  %@: p50 %.2f ms, p99 %.2f ms (client-observed over loopback)", label, percentile(times, 0.5),
        percentile(times, 0.99)))
  }
}

/// The `gps` executable beside gps-bench, or nil (and a line saying the suite is skipped).
func gpsBesideBench(for suite: String) -> String? {
  let gps = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("gps")
    .path
  guard FileManager.default.isExecutableFile(atPath: gps) else {
    print("\n\(suite): skipped (no gps binary beside gps-bench; build the gps product in release too)")
    return nil
  }
  return gps
}

extension ServerProcess {
  /// The web UI's address, from the server's `web UI on URL` line (within 10 s).
  func webAddress() async throws -> String {
    for _ in 0..<5000 {
      if let line = printed.split(separator: "\n").first(where: { $0.hasPrefix("web UI on ") }) {
        return String(line.dropFirst("web UI on ".count))
      }
      try await Task.sleep(for: .milliseconds(2))
    }
    throw QueueError(code: .io, message: "the web server did not start")
  }
}

private let webSession: URLSession = {
  let configuration = URLSessionConfiguration.ephemeral
  configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
  return URLSession(configuration: configuration)
}()

private func fetch(_ url: String) async throws -> (status: Int, body: String) {
  let (data, response) = try await webSession.data(from: URL(string: url)!)
  return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
}
