import Control
import Foundation
import GPSModel
import GPSTestSupport
import NIOCore
import Queue
import SwiftProtobuf
import Testing

@testable import Web

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// A server with its scheduler, A and B, and a client of its web UI.
func withWebServer(
  _ arguments: [String] = [], _ body: (Workbench, WebClient, GPSProcess) async throws -> Void
) async throws {
  try await withTemporaryDirectory { root in
    let bench = try await Workbench(root: root)
    let (server, _) = try await bench.startServer(arguments)
    let client = WebClient(base: try await server.webAddress())
    try await body(bench, client, server)
    server.signal(SIGTERM)
    #expect(await server.waitForExit() == 0, "\(server.stderr)")
  }
}

/// The web server as a process: metrics across a restart, a drain after SIGTERM.
@Suite struct WebServerTests {
  static let parameters = #"{"data_info": {"object_storage_urls": ["a"], "dataset": "b"}}"#

  /// The samples of a Prometheus exposition, by series (`name{labels}`), checking every line's form.
  static func samples(_ exposition: String) -> [String: Double] {
    var samples: [String: Double] = [:]
    for line in exposition.split(separator: "\n") where !line.hasPrefix("#") {
      let parts = line.split(separator: " ")
      #expect(parts.count == 2 && Double(parts[1]) != nil, "not a sample: \(line)")
      #expect(line.wholeMatch(of: /[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? \S+/) != nil, "\(line)")
      if parts.count == 2 { samples[String(parts[0])] = Double(parts[1]) }
    }
    return samples
  }

  @Test func metricsCountDurableEventsByDeploymentStepAndStateWithoutRunIDs() async throws {
    try await withTemporaryDirectory { root in
      // B always answers UNAVAILABLE: `process` is tried three times (two retries), then the run Fails.
      let bench = try await Workbench(root: root, bArguments: ["--fail-rate", "1"])
      let (server, _) = try await bench.startServer()
      let web = WebClient(base: try await server.webAddress())
      let enqueued = try await web.post(
        "/api/runs", #"{"deployment": "server-flow/MyPrefectDeployer", "parameters": \#(Self.parameters)}"#)
      let id = try #require((enqueued.json["run"] as? [String: Any])?["id"] as? String, "\(enqueued.body)")
      try await eventually("the run to fail") {
        (try await web.get("/api/runs/\(id)").json["run"] as? [String: Any])?["state"] as? String == "Failed"
      }
      let scraped = try await web.get("/metrics")
      #expect(scraped.status == 200)
      #expect(scraped.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
      #expect(!scraped.body.contains(id) && !scraped.body.contains(String(id.prefix(8))), "a run id is a label")
      #expect(scraped.body.contains("# HELP gps_runs_failed_total Runs that ended Failed, by deployment."))
      let samples = Self.samples(scraped.body)
      let deployment = #"deployment="server-flow/MyPrefectDeployer""#
      #expect(samples["gps_runs_enqueued_total{\(deployment)}"] == 1, "\(scraped.body)")
      #expect(samples["gps_runs_failed_total{\(deployment)}"] == 1)
      #expect(samples["gps_runs_completed_total{\(deployment)}"] == 0)
      #expect(samples[#"gps_runs{state="Failed"}"#] == 1)
      #expect(samples[#"gps_runs{state="Running"}"#] == 0)
      #expect(samples["gps_queue_depth"] == 0)
      #expect(
        samples["gps_step_attempt_duration_seconds_count{\(deployment),step=\"prepare\",outcome=\"succeeded\"}"] == 1)
      #expect(
        samples["gps_step_attempt_duration_seconds_count{\(deployment),step=\"process\",outcome=\"failed\"}"] == 3)
      #expect(samples["gps_step_retries_total{\(deployment),step=\"process\"}"] == 2)
      #expect(samples["gps_run_start_latency_seconds_count"] == 1)
      #expect(samples[#"gps_run_duration_seconds_count{state="Failed"}"#] == 1)
      #expect(samples[#"gps_run_duration_seconds_bucket{state="Failed",le="+Inf"}"#] == 1)
      #expect(samples["gps_leases_expired_total"] == 0)
      // Every event this server appended went through a batch, each batch through one fsync.
      let logged = try bench.history().count
      #expect(samples["gps_log_batch_events_sum"] == Double(logged))
      let batches = try #require(samples["gps_log_batch_events_count"])
      #expect(samples["gps_log_fsync_seconds_count"] == batches)
      #expect((samples["gps_log_append_seconds_count"] ?? 0) >= batches)

      // After a restart the gauges come from the replayed state, and replay counts nothing again.
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0)
      let (again, _) = try await bench.startServer()
      let rescraped = Self.samples(try await WebClient(base: try await again.webAddress()).get("/metrics").body)
      #expect(rescraped[#"gps_runs{state="Failed"}"#] == 1)
      #expect(rescraped["gps_runs_enqueued_total{\(deployment)}"] == nil)
      #expect(rescraped["gps_run_start_latency_seconds_count"] == 0)
      again.signal(SIGTERM)
      #expect(await again.waitForExit() == 0)
    }
  }

  @Test func theWebUIStillAnswersWhileRunsInFlightDrainAfterSIGTERM() async throws {
    try await withTemporaryDirectory { root in
      let bench = try await Workbench(root: root, bArguments: ["--latency", "2s"])
      let (server, _) = try await bench.startServer(["--grace", "60s"])
      let web = WebClient(base: try await server.webAddress())
      let enqueued = try await web.post(
        "/api/runs", #"{"deployment": "server-flow/MyPrefectDeployer", "parameters": \#(Self.parameters)}"#)
      let id = try #require((enqueued.json["run"] as? [String: Any])?["id"] as? String, "\(enqueued.body)")
      try await eventually("the run to call B") {
        try bench.history().contains { _, event in
          if case .attemptStarted(let attempt) = event.kind { return attempt.step == "process" }
          return false
        }
      }
      server.signal(SIGTERM)
      await server.waitForOutput { _, stderr in stderr.contains("stopping: no new claims") }
      // Draining: the run is still in flight, and its page and the API still answer.
      let run = try await web.get("/api/runs/\(id)")
      #expect(run.status == 200)
      #expect((run.json["run"] as? [String: Any])?["state"] as? String == "Running", "\(run.body)")
      #expect(try await web.get("/runs/\(id)").status == 200)
      #expect(await server.waitForExit() == 0, "\(server.stderr)")
      #expect(try bench.history().contains { _, event in if case .completed = event.kind { true } else { false } })
    }
  }

}

/// The web server's doors as a process: tokens, hostile bytes on the socket, its host names and its port.
@Suite struct WebServerAccessTests {

  @Test func withTokensPagesAskForOneAndTheAPIAnswers401() async throws {
    try await withTemporaryDirectory { root in
      try root.writeFile("tokens", Array("alice 0123456789abcdef-alice operator\n".utf8))
      let bench = try await Workbench(root: root)
      let (server, _) = try await bench.startServer(["--no-scheduler", "--tokens", root.path + "/tokens"])
      let web = WebClient(base: try await server.webAddress())
      let refused = try await web.get("/api/runs")
      #expect(refused.status == 401, "\(refused.body)")
      #expect(try await web.get("/api/runs", headers: ["Authorization": "Bearer wrong"]).status == 401)
      #expect(try await web.get("/api/runs", headers: ["Authorization": "Bearer 0123456789abcdef-alice"]).status == 200)
      // The scheme is case-insensitive (RFC 9110).
      for scheme in ["bearer", "BEARER", "bEaReR"] {
        let answer = try await web.get("/api/runs", headers: ["Authorization": "\(scheme) 0123456789abcdef-alice"])
        #expect(answer.status == 200, "\(scheme): \(answer.body)")
      }
      #expect(try await web.get("/api/runs", headers: ["Authorization": "Basic 0123456789abcdef-alice"]).status == 401)
      // A page sends the browser to sign in, which sets the cookie the pages then carry.
      let page = try await web.get("/runs")
      #expect(page.url?.path == "/login", "\(String(describing: page.url))")
      #expect(page.body.contains("Sign in"))
      let wrong = try await web.request(
        "POST", "/login", body: "token=nope&next=%2Fruns",
        headers: ["Content-Type": "application/x-www-form-urlencoded"],
        json: false)
      #expect(wrong.status == 401)
      // Signing in sends the browser on only to a page of this site (`/\\host` is another site to
      // a browser, which reads the backslash as a slash).
      let staying = WebClient(base: web.base, followRedirects: false)
      for (next, location) in [
        ("%2Fhistory%3Frun%3Dab", "/history?run=ab"), ("%2F%2Fevil.example%2F", "/"),
        ("%2F%5Cevil.example", "/"), ("https%3A%2F%2Fevil.example", "/"),
        // A browser drops tabs and newlines from a URL: `/\t/evil.example` is `//evil.example`.
        ("%2F%09%2Fevil.example", "/"), ("%2F%0A%2Fevil.example", "/"), ("%2F%0D%0ASet-Cookie%3A%20x", "/"),
      ] {
        let signIn = try await staying.request(
          "POST", "/login", body: "token=0123456789abcdef-alice&next=\(next)",
          headers: ["Content-Type": "application/x-www-form-urlencoded"], json: false)
        #expect(signIn.status == 303, "\(next)")
        #expect(signIn.headers["location"] == location, "\(next): \(signIn.headers)")
      }
      let cookie = "gps_token=0123456789abcdef-alice"
      let signedIn = try await web.get("/runs", headers: ["Cookie": cookie])
      #expect(signedIn.status == 200)
      #expect(signedIn.url?.path == "/runs")
      #expect(signedIn.body.contains("action=\"/logout\""))
      // Signing out expires the cookie and goes back to the sign-in page.
      let signOut = try await staying.request("POST", "/logout", headers: ["Cookie": cookie], json: false)
      #expect(signOut.status == 303)
      #expect(signOut.headers["location"] == "/login")
      let expired = signOut.headers["set-cookie"] ?? ""
      #expect(expired.hasPrefix("gps_token=;") && expired.contains("Max-Age=0"), "\(expired)")
      // Who enqueued is the token's name, whatever the request says.
      let enqueued = try await web.post(
        "/api/runs", #"{"deployment": "server-flow/MyPrefectDeployer", "parameters": \#(WebServerTests.parameters)}"#,
        headers: ["Cookie": cookie])
      #expect((enqueued.json["run"] as? [String: Any])?["enqueued_by"] as? String == "alice", "\(enqueued.body)")
      #expect(try await web.get("/healthz").status == 200)
      // A Prometheus scraper sends the token as a bearer; without one it is refused, not redirected.
      #expect(try await web.get("/metrics").status == 401)
      let scraped = try await web.get("/metrics", headers: ["Authorization": "Bearer 0123456789abcdef-alice"])
      #expect(scraped.status == 200)
      #expect(scraped.body.contains("gps_runs{state=\"Scheduled\"} 1"), "\(scraped.body)")
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0)
    }
  }

  /// Numbers beyond their range, a body beyond its limit and a Host of another name: each is one
  /// line with its status, nothing is written, and the server goes on answering.
  @Test func hostileRequestsAreRefusedWithOneLineAndTheServerLives() async throws {
    try await withWebServer(["--no-scheduler"]) { bench, web, server in
      let enqueued = try await web.post(
        "/api/runs", #"{"deployment": "server-flow/MyPrefectDeployer", "parameters": \#(WebServerTests.parameters)}"#)
      #expect(enqueued.status == 201, "\(enqueued.body)")
      let id = (enqueued.json["run"] as? [String: Any])?["id"] as? String ?? ""
      let before = try bench.history().count
      for path in [
        "/api/history?after=18446744073709551615", "/api/history?after=9223372036854775808", "/api/history?after=-1",
        "/api/history?after=%2B1", "/api/runs/\(id)/events?after=18446744073709551615",
        "/api/history/stream?after=18446744073709551615", "/api/runs/\(id)/stream?after=18446744073709551615",
      ] {
        let answer = try await web.get(path)
        #expect(answer.status == 400, "\(path): \(answer.status) \(answer.body)")
        let message = (answer.json["error"] as? [String: Any])?["message"] as? String ?? ""
        #expect(
          message.hasPrefix("after: expected a sequence number from 0 to 9223372036854775807"), "\(path): \(message)")
      }
      for path in ["/api/history/stream", "/api/runs/\(id)/stream"] {
        let answer = try await web.get(path, headers: ["Last-Event-ID": "18446744073709551615"])
        #expect(answer.status == 400, "\(path): \(answer.body)")
        #expect(answer.body.contains("Last-Event-ID: expected a sequence number"), "\(answer.body)")
      }
      #expect(try await web.get("/api/history?after=9223372036854775807").status == 200)
      // A body beyond the limit: 413 naming it, not a 500.
      let huge = try await web.post("/api/runs", String(repeating: " ", count: 10 << 20))
      #expect(huge.status == 413, "\(huge.status) \(huge.body.prefix(300))")
      #expect(huge.body.contains("larger than the limit of 5242880 bytes"), "\(huge.body.prefix(300))")
      // DNS rebinding: a page of evil.example whose name now points here sends its own name as
      // Host and as Origin. Refused (421), whatever the method; this server's own names are not.
      let port = Int(web.base.split(separator: ":").last!)!
      let body = #"{"deployment": "server-flow/MyPrefectDeployer", "parameters": \#(WebServerTests.parameters)}"#
      for (method, host) in [("POST", "evil.example:\(port)"), ("GET", "evil.example:\(port)"), ("GET", "127.0.0.1:1")]
      {
        let answer = try rawHTTP(
          "\(method) /api/runs HTTP/1.1\r\nHost: \(host)\r\nOrigin: http://\(host)\r\n"
            + "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
            + (method == "POST" ? body : ""), port: port)
        #expect(answer.hasPrefix("HTTP/1.1 421"), "\(method) \(host): \(answer.prefix(400))")
        #expect(answer.contains("does not answer for the host"), "\(answer.prefix(400))")
      }
      for host in ["127.0.0.1:\(port)", "localhost:\(port)", "LOCALHOST.:\(port)"] {
        let answer = try rawHTTP("GET /api/runs HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n\r\n", port: port)
        #expect(answer.hasPrefix("HTTP/1.1 200"), "\(host): \(answer.prefix(300))")
      }
      // Invalid UTF-8 is refused naming where, not stored as U+FFFD.
      let invalid =
        Array(
          #"{"deployment": "server-flow/MyPrefectDeployer", "parameters": {"data_info": {"object_storage_urls": ["a"], "dataset": "b"#
            .utf8)
        + [0xFF, 0xFE] + Array(#""}}}"#.utf8)
      let utf8 = try rawHTTP(
        bytes: Array(
          "POST /api/runs HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nContent-Type: application/json\r\nContent-Length: \(invalid.count)\r\nConnection: close\r\n\r\n"
            .utf8) + invalid, port: port)
      #expect(utf8.hasPrefix("HTTP/1.1 400"), "\(utf8.prefix(400))")
      #expect(utf8.contains("not valid UTF-8: at parameters.data_info.dataset (byte 120)"), "\(utf8)")
      #expect(try bench.history().count == before)
      #expect(try await web.get("/healthz").status == 200)
      _ = server
    }
  }

  /// `--public-url` names the host a proxy or a DNS name serves the UI by: accepted beside the bound address.
  @Test func aPublicURLsHostIsAccepted() async throws {
    try await withWebServer(["--no-scheduler", "--public-url", "https://gps.example.com"]) { _, web, _ in
      let port = Int(web.base.split(separator: ":").last!)!
      let named = try rawHTTP(
        "GET /api/runs HTTP/1.1\r\nHost: gps.example.com\r\nConnection: close\r\n\r\n", port: port)
      #expect(named.hasPrefix("HTTP/1.1 200"), "\(named.prefix(300))")
      let other = try rawHTTP(
        "GET /api/runs HTTP/1.1\r\nHost: gps.example.org\r\nConnection: close\r\n\r\n", port: port)
      #expect(other.hasPrefix("HTTP/1.1 421"), "\(other.prefix(300))")
    }
  }

  @Test func aWebPortInUseStopsTheServerWithOneLine() async throws {
    try await withTemporaryDirectory { root in
      let bench = try await Workbench(root: root)
      let (first, _) = try await bench.startServer(["--no-scheduler"])
      let address = try await first.webAddress()
      let port = String(address.split(separator: ":").last!)
      let second = try await GPSProcess.run(
        ["server", "start", "--data-dir", root.path + "/other", "--port", "0", "--http-port", port, "--no-scheduler"])
      #expect(second.status == 1, "\(second.stderr)")
      #expect(second.stderr.contains("cannot serve the web UI on 127.0.0.1:\(port)"), "\(second.stderr)")
      #expect(second.stderr.contains("--http-port"), "\(second.stderr)")
      first.signal(SIGTERM)
      #expect(await first.waitForExit() == 0)
    }
  }
}
