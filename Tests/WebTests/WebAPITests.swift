import Control
import Foundation
import GPSModel
import GPSTestSupport
import NIOCore
import Queue
import SwiftProtobuf
import Testing

@testable import Web

/// The web API in-process: the same requests as over HTTP, answered by the router.
@Suite struct WebAPITests {
  static let parameters = #"{"data_info": {"object_storage_urls": ["a"], "dataset": "b"}}"#

  @Test func aRunEnqueuedOverHTTPCompletesAndItsEventsPage() async throws {
    try await WebHarness.run(scheduler: true) { harness in
      let web = harness.web
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

      // Events a page at a time: the pages join up to the run's whole history (once it is all
      // durable: the run's state is answered as soon as it is applied).
      let logged = try await harness.history().filter { $0.1.run?.description == id }.map { String($0.0) }
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

  /// A stream resumes after a `Last-Event-ID`, which is how a browser's EventSource reconnects
  /// (and how a client that fell behind continues).
  @Test func aStreamResumesAfterTheLastEventIDItWasGiven() async throws {
    try await WebHarness.run(scheduler: true) { harness in
      let web = harness.web
      let all = try await harness.history().map(\.0)
      #expect(all.count == 1)  // the registration
      let enqueued = try await web.post(
        "/api/runs", #"{"deployment": "server-flow/MyPrefectDeployer", "parameters": \#(Self.parameters)}"#)
      let id = try #require((enqueued.json["run"] as? [String: Any])?["id"] as? String)
      try await eventually("the run to complete") {
        (try await web.get("/api/runs/\(id)").json["run"] as? [String: Any])?["state"] as? String == "Completed"
      }
      let events = try await harness.history().filter { $0.1.run?.description == id }.map(\.0)
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
    try await WebHarness.run(scheduler: true) { harness in
      let web = harness.web
      let before = try await harness.history().count
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
      #expect(try await harness.history().count == before)
    }
  }

  /// A page of another site cannot make the browser change anything here.
  @Test func crossSiteAndNonJSONRequestsThatChangeSomethingAreRefused() async throws {
    try await WebHarness.run(scheduler: true) { harness in
      let web = harness.web
      let before = try await harness.history().count
      let body = #"{"deployment": "server-flow/MyPrefectDeployer", "parameters": \#(WebAPITests.parameters)}"#
      let foreign = try await web.post("/api/runs", body, headers: ["Origin": "http://evil.example"])
      #expect(foreign.status == 403, "\(foreign.body)")
      let fetchSite = try await web.post("/api/runs", body, headers: ["Sec-Fetch-Site": "cross-site"])
      #expect(fetchSite.status == 403)
      let form = try await web.request(
        "POST", "/api/runs", body: body, headers: ["Content-Type": "text/plain"], json: false)
      #expect(form.status == 403, "\(form.body)")
      #expect(try await harness.history().count == before)
      // The site itself may.
      let host = "localhost"
      let own = try await web.post("/api/runs", body, headers: ["Origin": "http://\(host)"])
      #expect(own.status == 201, "\(own.body)")
    }
  }

  @Test func theOpenAPIDocumentDescribesEveryRouteAndTheMessagesAnswered() async throws {
    try await WebHarness.run { harness in
      let web = harness.web
      let document = try await web.get("/api/openapi.json").json
      #expect(document["openapi"] as? String == "3.1.0")
      let paths = try #require(document["paths"] as? [String: Any])
      #expect(
        Set(paths.keys) == [
          "/api/runs", "/api/runs/{id}", "/api/runs/{id}/events", "/api/runs/{id}/stream", "/api/runs/{id}/cancel",
          "/api/runs/{id}/retry", "/api/deployments", "/api/deployments/{flow}/{name}", "/api/history",
          "/api/history/stream", "/api/history/verify", "/api/cluster",
        ])
      // A server of the file log belongs to no cluster: the route says so.
      let cluster = try await web.get("/api/cluster")
      #expect(cluster.status == 404 && cluster.body.contains("belongs to no cluster"), "\(cluster.body)")
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

/// The web UI's pages in-process.
@Suite struct WebPageTests {
  /// User strings render as text: a dataset and a tag that are markup stay text, on every page
  /// that shows them, and the pages forbid inline script whatever they hold.
  @Test func markupInParametersTagsAndErrorsRendersAsText() async throws {
    try await WebHarness.run { harness in
      let web = harness.web
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
    try await WebHarness.run { harness in
      let web = harness.web
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
}
