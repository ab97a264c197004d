import Control
import Foundation
import GPSModel
import GPSTesting
import NIOCore
import Queue
import SwiftProtobuf
import Testing

@testable import Web

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// Answers redirects with themselves, so a test sees where a redirect would go.
final class StayOnRedirect: NSObject, URLSessionTaskDelegate, Sendable {
  func urlSession(
    _ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
    newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void
  ) {
    completionHandler(nil)
  }
}

/// An HTTP client for the web UI's tests: no cookies kept, no cache.
struct WebClient {
  let base: String
  let session: URLSession

  init(base: String, followRedirects: Bool = true) {
    self.base = base
    let configuration = URLSessionConfiguration.ephemeral
    configuration.httpCookieStorage = nil
    configuration.httpShouldSetCookies = false
    configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
    session = URLSession(
      configuration: configuration, delegate: followRedirects ? nil : StayOnRedirect(), delegateQueue: nil)
  }

  struct Answer {
    var status: Int
    var headers: [String: String]
    var body: String
    /// Where the request ended after redirects.
    var url: URL?

    var json: [String: Any] {
      (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:]
    }
  }

  func request(
    _ method: String, _ path: String, body: String? = nil, headers: [String: String] = [:],
    json: Bool = true
  ) async throws -> Answer {
    var request = URLRequest(url: URL(string: base + path)!)
    request.httpMethod = method
    request.timeoutInterval = 30
    if let body {
      request.httpBody = Data(body.utf8)
      if json { request.setValue("application/json", forHTTPHeaderField: "Content-Type") }
    }
    for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
    let (data, response) = try await session.data(for: request)
    let http = response as! HTTPURLResponse
    var fields: [String: String] = [:]
    for (name, value) in http.allHeaderFields {
      if let name = name as? String, let value = value as? String { fields[name.lowercased()] = value }
    }
    return Answer(status: http.statusCode, headers: fields, body: String(decoding: data, as: UTF8.self), url: http.url)
  }

  func get(_ path: String, headers: [String: String] = [:]) async throws -> Answer {
    try await request("GET", path, headers: headers)
  }

  func post(_ path: String, _ body: String = "{}", headers: [String: String] = [:]) async throws -> Answer {
    try await request("POST", path, body: body, headers: headers)
  }
}

extension GPSProcess {
  /// The web UI's address, from the server's `web UI on URL` line.
  func webAddress() async throws -> String {
    await waitForOutput { stdout, _ in stdout.contains("web UI on http://") }
    guard let line = stdout.split(separator: "\n").first(where: { $0.hasPrefix("web UI on ") }) else {
      throw ProcessFailure(message: "gps did not report its web address; stderr: \(stderr)")
    }
    return String(line.dropFirst("web UI on ".count))
  }
}

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

@Suite struct WebAPITests {
  static let parameters = #"{"data_info": {"object_storage_urls": ["a"], "dataset": "b"}}"#

  @Test func aRunEnqueuedOverHTTPCompletesAndItsEventsPage() async throws {
    try await withWebServer { bench, web, _ in
      let enqueued = try await web.post(
        "/api/runs",
        #"{"deployment": "server-flow/MyPrefectDeployer", "parameters": \#(Self.parameters), "tags": ["web"], "idempotency_key": "k1"}"#
      )
      #expect(enqueued.status == 201, "\(enqueued.body)")
      let run = try #require(enqueued.json["run"] as? [String: Any])
      let id = try #require(run["id"] as? String)
      #expect(enqueued.json["created"] as? Bool == true)
      // The same key again: the same run, 200, nothing new.
      let again = try await web.post(
        "/api/runs",
        #"{"deployment": "server-flow/MyPrefectDeployer", "parameters": \#(Self.parameters), "idempotency_key": "k1"}"#)
      #expect(again.status == 200)
      #expect((again.json["run"] as? [String: Any])?["id"] as? String == id)

      try await eventually("the run to complete") {
        (try await web.get("/api/runs/\(id)").json["run"] as? [String: Any])?["state"] as? String == "Completed"
      }
      let answer = try await web.get("/api/runs/\(id)")
      #expect(answer.headers["content-type"] == "application/json; charset=utf-8")
      let info = try #require(answer.json["run"] as? [String: Any])
      #expect((info["tags"] as? [String])?.contains("web") == true, "\(info)")
      #expect(info["deployment_version"] as? Int == 1)
      // The result as JSON, decoded with the deployment's registered types.
      let result = try #require(answer.json["result_json"] as? [String: Any], "\(answer.body)")
      #expect(result["dataset_digest"] is String, "\(result)")

      // Listed, filtered; and a filter that matches nothing.
      let listed = try await web.get("/api/runs?state=Completed&tag=web")
      #expect((listed.json["runs"] as? [[String: Any]])?.map { $0["id"] as? String } == [id])
      let none = try await web.get("/api/runs?state=Failed")
      #expect((none.json["runs"] as? [[String: Any]] ?? []).isEmpty)
      // A time is RFC 3339 or unsigned microseconds, as the OpenAPI document says (schemathesis
      // found a negative number taken as a time).
      #expect(try await web.get("/api/runs?enqueued_before=-1632123647").status == 400)
      #expect(try await web.get("/api/runs?enqueued_before=1780000000000000").status == 200)

      // Events a page at a time: the pages join up to the run's whole history.
      var sequences: [String] = []
      var after = "0"
      for _ in 0..<10 {
        let page = try await web.get("/api/runs/\(id)/events?limit=3&after=\(after)")
        let events = try #require(page.json["events"] as? [[String: Any]])
        sequences += events.compactMap { $0["sequence"] as? String }
        // The run's id as the UUID string a run's {id} is, not proto JSON's base64 of its bytes.
        #expect(events.allSatisfy { ($0["event"] as? [String: Any])?["run_id"] as? String == id }, "\(events)")
        guard let next = page.json["next_after"] as? String else { break }
        after = next
      }
      let logged = try bench.history().filter { $0.1.run?.description == id }.map { String($0.0) }
      #expect(sequences == logged)
      #expect(logged.count == 8)

      // The history of the whole log, from the registration on.
      let history = try await web.get("/api/history?limit=1")
      let first = try #require((history.json["events"] as? [[String: Any]])?.first)
      #expect((first["event"] as? [String: Any])?["deployment_registered"] != nil, "\(first)")

      // A finished run's stream sends its events, then ends.
      let stream = try await web.get("/api/runs/\(id)/stream")
      #expect(stream.headers["content-type"] == "text/event-stream")
      #expect(stream.body.components(separatedBy: "\nid: ").count - 1 == 8 - 1, "\(stream.body)")
      #expect(stream.body.hasSuffix("event: end\ndata: {}\n\n"), "\(stream.body)")

      let verify = try await web.post("/api/history/verify")
      #expect(verify.json["ok"] as? Bool == true, "\(verify.body)")
      #expect(verify.json["records"] as? Int == 9)

      #expect(try await web.get("/healthz").status == 200)
      #expect(try await web.get("/readyz").json["status"] as? String == "ready")
    }
  }

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

  /// A stream resumes after a `Last-Event-ID`, which is how a browser's EventSource reconnects
  /// (and how a client that fell behind continues).
  @Test func aStreamResumesAfterTheLastEventIDItWasGiven() async throws {
    try await withWebServer { bench, web, _ in
      let all = try bench.history().map(\.0)
      #expect(all.count == 1)  // the registration
      let enqueued = try await web.post(
        "/api/runs", #"{"deployment": "server-flow/MyPrefectDeployer", "parameters": \#(Self.parameters)}"#)
      let id = try #require((enqueued.json["run"] as? [String: Any])?["id"] as? String)
      try await eventually("the run to complete") {
        (try await web.get("/api/runs/\(id)").json["run"] as? [String: Any])?["state"] as? String == "Completed"
      }
      let events = try bench.history().filter { $0.1.run?.description == id }.map(\.0)
      let resumed = try await web.get("/api/runs/\(id)/stream", headers: ["Last-Event-ID": String(events[2])])
      let ids = resumed.body.split(separator: "\n").filter { $0.hasPrefix("id: ") }.map { UInt64($0.dropFirst(4))! }
      #expect(ids == Array(events.dropFirst(3)))
      #expect(resumed.body.hasSuffix("event: end\ndata: {}\n\n"))
    }
  }

  /// A client that reads slower than events arrive is not buffered without bound: after
  /// `SSEEvents.buffered` events the stream ends, with no `end` event, so the browser reconnects
  /// from the last one it got and nothing is skipped.
  @Test func aClientThatFallsBehindGetsWhatWasBufferedAndNoEnd() async throws {
    let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream(
      bufferingPolicy: .bufferingOldest(SSEEvents.buffered))
    let events = SSEEvents(continuation)
    for sequence in 1...UInt64(SSEEvents.buffered) { try await events.write(.with { $0.sequence = sequence }) }
    await #expect(throws: SSEEvents.FellBehind.self) {
      try await events.write(.with { $0.sequence = UInt64(SSEEvents.buffered) + 1 })
    }
    continuation.finish()
    var ids: [UInt64] = []
    for await buffer in stream {
      let text = String(buffer: buffer)
      #expect(!text.contains("event: end"))
      if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("id: ") }) {
        ids.append(UInt64(line.dropFirst(4))!)
      }
    }
    #expect(ids == Array(1...UInt64(SSEEvents.buffered)))
  }

  @Test func anInvalidEnqueueNamesEachFieldByPathAndWritesNothing() async throws {
    try await withWebServer { bench, web, _ in
      let before = try bench.history().count
      let refused = try await web.post(
        "/api/runs",
        #"{"deployment": "server-flow/MyPrefectDeployer", "parameters": {"data_info": {"object_storage_urls": ["a", 7], "dataset": 5}}}"#
      )
      #expect(refused.status == 400, "\(refused.body)")
      let error = try #require(refused.json["error"] as? [String: Any])
      #expect(error["code"] as? String == "INVALID_ARGUMENT")
      let problems = (error["problems"] as? [[String: String]] ?? []).map { "\($0["path"]!) | \($0["message"]!)" }
      #expect(
        problems == [
          "data_info.object_storage_urls[1] | expected a string, got the number 7",
          "data_info.dataset | expected a string, got the number 5",
        ], "\(refused.body)")

      for (body, status, message) in [
        (#"{"deployment": "nope/x", "parameters": {}}"#, 404, "no deployment is named"),
        (#"{"parameters": {}}"#, 400, "deployment: required"),
        (#"{"deployment": "server-flow/MyPrefectDeployer", "colour": 1}"#, 400, #""colour": unknown field"#),
        (#"{"deployment": "server-flow/MyPrefectDeployer", "start_in": "soon"}"#, 400, "start_in: expected a duration"),
        // Found by schemathesis: a start beyond the clock's range crashed the server.
        (#"{"deployment": "server-flow/MyPrefectDeployer", "start_in": "99999999999999999d"}"#, 400, "start_in"),
        (#"[1]"#, 400, "the body is a JSON object"),
        (#"{"#, 400, "the body is not JSON"),
      ] {
        let answer = try await web.post("/api/runs", body)
        #expect(answer.status == status, "\(body): \(answer.body)")
        let text = (answer.json["error"] as? [String: Any])?["message"] as? String ?? ""
        #expect(text.contains(message), "\(body): \(answer.body)")
      }
      #expect(try await web.get("/api/runs/00000000").status == 404)
      #expect(try await web.get("/api/runs?limit=zero").status == 400)
      #expect(try bench.history().count == before)
    }
  }

  /// A page of another site cannot make the browser change anything here.
  @Test func crossSiteAndNonJSONRequestsThatChangeSomethingAreRefused() async throws {
    try await withWebServer { bench, web, _ in
      let before = try bench.history().count
      let body = #"{"deployment": "server-flow/MyPrefectDeployer", "parameters": \#(WebAPITests.parameters)}"#
      let foreign = try await web.post("/api/runs", body, headers: ["Origin": "http://evil.example"])
      #expect(foreign.status == 403, "\(foreign.body)")
      let fetchSite = try await web.post("/api/runs", body, headers: ["Sec-Fetch-Site": "cross-site"])
      #expect(fetchSite.status == 403)
      let form = try await web.request(
        "POST", "/api/runs", body: body, headers: ["Content-Type": "text/plain"], json: false)
      #expect(form.status == 403, "\(form.body)")
      #expect(try bench.history().count == before)
      // The site itself may.
      let host = String(web.base.dropFirst("http://".count))
      let own = try await web.post("/api/runs", body, headers: ["Origin": "http://\(host)"])
      #expect(own.status == 201, "\(own.body)")
    }
  }

  @Test func theOpenAPIDocumentDescribesEveryRouteAndTheMessagesAnswered() async throws {
    try await withWebServer { _, web, _ in
      let document = try await web.get("/api/openapi.json").json
      #expect(document["openapi"] as? String == "3.1.0")
      let paths = try #require(document["paths"] as? [String: Any])
      #expect(
        Set(paths.keys) == [
          "/api/runs", "/api/runs/{id}", "/api/runs/{id}/events", "/api/runs/{id}/stream", "/api/runs/{id}/cancel",
          "/api/runs/{id}/retry", "/api/deployments", "/api/deployments/{flow}/{name}", "/api/history",
          "/api/history/stream", "/api/history/verify",
        ])
      let schemas = try #require((document["components"] as? [String: Any])?["schemas"] as? [String: Any])
      let runInfo = try #require(schemas["gps.v1.RunInfo"] as? [String: Any])
      let properties = try #require(runInfo["properties"] as? [String: Any])
      #expect(properties["state_since_micros"] != nil)
      #expect(properties["deployment_version"] != nil)
      // This server's document: an enqueue is one of its registered deployments, with parameters
      // as that deployment's own schema says.
      let choices = try #require((schemas["EnqueueRequest"] as? [String: Any])?["oneOf"] as? [[String: Any]])
      #expect(choices.count == 1)
      let choice = try #require(choices.first?["properties"] as? [String: Any])
      #expect((choice["deployment"] as? [String: Any])?["const"] as? String == "server-flow/MyPrefectDeployer")
      #expect(
        (choice["parameters"] as? [String: Any])?["$ref"] as? String
          == "#/components/schemas/Parameters.server-flow.MyPrefectDeployer")
      let parameters = try #require(schemas["Parameters.server-flow.MyPrefectDeployer"] as? [String: Any])
      #expect(parameters["required"] as? [String] == ["data_info"])
      // An event's run is a UUID string, and the enqueue's answer links to the operations on it.
      let event = try #require((schemas["gps.v1.Event"] as? [String: Any])?["properties"] as? [String: Any])
      #expect((event["run_id"] as? [String: Any])?["format"] as? String == "uuid")
      let created =
        (((paths["/api/runs"] as? [String: Any])?["post"] as? [String: Any])?["responses"]
        as? [String: Any])?["201"] as? [String: Any]
      #expect(
        Set(((created?["links"] as? [String: Any]) ?? [:]).keys) == ["getRun", "runEvents", "cancelRun", "retryRun"])
      // Every reference resolves.
      let text = try await web.get("/api/openapi.json").body
      let references = text.components(separatedBy: "\"#/components/schemas/").dropFirst().map {
        String($0.prefix { $0 != "\"" })
      }
      #expect(!references.isEmpty)
      for reference in references { #expect(schemas[reference] != nil, "\(reference)") }
    }
  }
}

@Suite struct WebPageTests {
  /// User strings render as text: a dataset and a tag that are markup stay text, on every page
  /// that shows them, and the pages forbid inline script whatever they hold.
  @Test func markupInParametersTagsAndErrorsRendersAsText() async throws {
    try await withWebServer(["--no-scheduler"]) { _, web, _ in
      let script = "<script>alert(1)</script>"
      let image = #""><img src=x onerror=alert(1)>"#
      let parameters = #"{"data_info": {"object_storage_urls": ["a"], "dataset": "\#(script)"}}"#
      let enqueued = try await web.post(
        "/api/runs",
        #"{"deployment": "server-flow/MyPrefectDeployer", "parameters": \#(parameters), "tags": ["\#(image.replacingOccurrences(of: "\"", with: "\\\""))"]}"#
      )
      #expect(enqueued.status == 201, "\(enqueued.body)")
      let id = try #require((enqueued.json["run"] as? [String: Any])?["id"] as? String)
      for path in [
        "/runs/\(id)", "/runs", "/history",
        "/runs?tag=\(image.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)",
      ] {
        let page = try await web.get(path)
        #expect(page.status == 200, "\(path): \(page.body)")
        #expect(!page.body.contains("<script>alert"), "\(path)")
        #expect(!page.body.contains("<img src=x"), "\(path)")
        #expect(page.headers["content-security-policy"]?.contains("script-src 'self'") == true)
      }
      let run = try await web.get("/runs/\(id)")
      #expect(run.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
      let runs = try await web.get("/runs")
      #expect(runs.body.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"))
      // An error that echoes input escapes it too.
      let missing = try await web.get("/runs/\(script.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)")
      #expect(missing.status == 404 || missing.status == 400, "\(missing.body)")
      #expect(!missing.body.contains("<script>alert"))
    }
  }

  @Test func theDeploymentPageCarriesItsParameterSchemaForTheForm() async throws {
    try await withWebServer(["--no-scheduler"]) { _, web, _ in
      let page = try await web.get("/deployments/server-flow/MyPrefectDeployer")
      #expect(page.status == 200, "\(page.body)")
      #expect(page.body.contains(#"<form id="run-form""#))
      #expect(page.body.contains(##""$ref":"#/$defs/gps.v1.DataInfo""##), "\(page.body)")
      let api = try await web.get("/api/deployments/server-flow/MyPrefectDeployer")
      let schema = try #require(api.json["parameter_schema"] as? [String: Any])
      #expect((schema["required"] as? [String]) == ["data_info"])
      let deployment = try #require(api.json["deployment"] as? [String: Any])
      #expect(deployment["status"] as? String == "NOT_READY")
      let list = try await web.get("/deployments")
      #expect(list.body.contains("server-flow/MyPrefectDeployer"))
      let script = try await web.get("/static/app.js")
      #expect(script.headers["content-type"] == "text/javascript; charset=utf-8")
      #expect(script.body.contains("function deploymentPage()"))
    }
  }

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
        "/api/runs", #"{"deployment": "server-flow/MyPrefectDeployer", "parameters": \#(WebAPITests.parameters)}"#,
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
        "/api/runs", #"{"deployment": "server-flow/MyPrefectDeployer", "parameters": \#(WebAPITests.parameters)}"#)
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
      let body = #"{"deployment": "server-flow/MyPrefectDeployer", "parameters": \#(WebAPITests.parameters)}"#
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
