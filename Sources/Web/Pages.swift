import Control
import Flows
import Foundation
import GPSModel
import GRPCCore
import HTTPTypes
import Hummingbird
import NIOCore
import Queue
import SwiftProtobuf

/// A page of the web UI: server-rendered HTML, with small scripts for what is live or interactive.
struct Page {
  var title: String
  var body: HTML
  /// Data for the page's script, as JSON in a `<script type="application/json">` element.
  var data: JSONValue?

  /// `signOut`: the header has a Sign out button (the server has tokens).
  func response(status: HTTPResponse.Status = .ok, signOut: Bool = false) -> Response {
    var page = HTML("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">")
    page.raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
    page.element("title", text: "\(title) · GPS")
    page.raw("<link rel=\"stylesheet\" href=\"/static/app.css\"></head><body>")
    page.raw(
      "<header><a class=\"brand\" href=\"/runs\">GPS</a><nav><a href=\"/runs\">Runs</a><a href=\"/deployments\">Deployments</a><a href=\"/history\">History</a></nav>"
    )
    if signOut {
      page.raw(
        "<form method=\"post\" action=\"/logout\" class=\"sign-out\"><button type=\"submit\">Sign out</button></form>")
    }
    page.raw("</header>")
    page.raw("<main id=\"main\">")
    page.add(body)
    page.raw("</main>")
    if let data {
      // JSON inside a script element: `<` is escaped so no value can close the element.
      page.raw("<script type=\"application/json\" id=\"page-data\">")
      page.raw(data.text.replacingOccurrences(of: "<", with: "\\u003c"))
      page.raw("</script>")
    }
    page.raw("<script src=\"/static/app.js\"></script></body></html>")
    return Response(
      status: status,
      headers: [
        .contentType: "text/html; charset=utf-8", .cacheControl: "no-store",
        // Only this site's own script and style; no inline script can run, whatever a value holds.
        HTTPField.Name("Content-Security-Policy")!:
          "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        HTTPField.Name("X-Content-Type-Options")!: "nosniff",
      ],
      body: .init(byteBuffer: ByteBuffer(string: page.text)))
  }

  static func error(_ error: WebError) -> Page {
    var body = HTML()
    body.element("h1", text: "\(error.status.code) \(error.status.reasonPhrase)")
    body.element("p", [("class", "error")], text: error.message)
    for problem in error.problems {
      body.element("p", [("class", "problem")], text: "\(problem.path): \(problem.message)")
    }
    return Page(title: "Error", body: body)
  }
}

/// The pages: runs, a run, deployments, a deployment with its run form, and the history.
struct Pages: Sendable {
  let site: Site

  func addRoutes(to router: Router<WebContext>) {
    router.get("/") { _, _ in
      var response = Response(status: .seeOther)
      response.headers[.location] = "/runs"
      return response
    }
    router.get("runs") { request, context in try await self.page(request) { try await self.runs(request, context) } }
    router.get("runs/:id") { request, context in try await self.page(request) { try await self.run(request, context) } }
    router.get("deployments") { request, context in
      try await self.page(request) { try await self.deployments(context) }
    }
    router.get("deployments/:flow/:name") { request, context in
      try await self.page(request) { try await self.deployment(request, context) }
    }
    router.get("history") { request, context in
      try await self.page(request) { try await self.history(request, context) }
    }
    router.get("login") { request, _ in self.login(request, problem: nil).response() }
    router.post("login") { request, _ in try await self.signIn(request) }
    router.post("logout") { _, _ in self.signOut() }
    router.get("static/app.js") { _, _ in
      Response.text(Assets.script, type: "text/javascript; charset=utf-8")
    }
    router.get("favicon.ico") { _, _ in Response(status: .noContent) }
    router.get("static/app.css") { _, _ in Response.text(Assets.style, type: "text/css; charset=utf-8") }
  }

  func page(_ request: Request, _ body: () async throws -> Page) async throws -> Response {
    do {
      return try await body().response(signOut: !site.tokens.isEmpty)
    } catch {
      let failure = WebError.from(error)
      return Page.error(failure).response(status: failure.status, signOut: !site.tokens.isEmpty)
    }
  }

  // MARK: Runs

  static let states = [
    "Scheduled", "Late", "Pending", "Running", "AwaitingRetry", "Completed", "Failed", "Cancelling", "Cancelled",
    "Crashed", "TimedOut",
  ]

  func runs(_ request: Request, _ context: WebContext) async throws -> Page {
    let query = request.uri.queryParameters
    let answer = try await site.runs(request, context, defaultLimit: 50)
    let states = Set(query.getAll("state").flatMap { $0.split(separator: ",").map(String.init) })
    let chosenDeployment = query.get("deployment") ?? ""
    let tag = query.get("tag") ?? ""
    let cursor = query.get("cursor") ?? ""
    let deployments = site.queue.deployments.map(\.name)
    var body = HTML()
    body.raw("<h1>Runs</h1>")
    body.raw("<form class=\"filters\" method=\"get\" action=\"/runs\">")
    body.raw("<label>State <select name=\"state\"><option value=\"\">any</option>")
    for state in Self.states {
      var attributes = [("value", state)]
      if states.contains(state) { attributes.append(("selected", "selected")) }
      body.element("option", attributes, text: state)
    }
    body.raw("</select></label><label>Deployment <select name=\"deployment\"><option value=\"\">any</option>")
    for name in deployments {
      var attributes = [("value", name)]
      if name == chosenDeployment { attributes.append(("selected", "selected")) }
      body.element("option", attributes, text: name)
    }
    body.raw("</select></label><label>Tag ")
    body.open("input", [("name", "tag"), ("value", tag)])
    body.raw("</label><label>Enqueued after ")
    body.open(
      "input", [("name", "enqueued_after"), ("type", "datetime-local"), ("value", query.get("enqueued_after") ?? "")])
    body.raw("</label><label>before ")
    body.open(
      "input", [("name", "enqueued_before"), ("type", "datetime-local"), ("value", query.get("enqueued_before") ?? "")])
    body.raw("</label><button type=\"submit\">Filter</button></form>")
    // Only what the signed-in role may do is offered.
    if context.roles.allows(.operator) {
      body.raw(
        "<div class=\"actions\"><button type=\"button\" id=\"cancel-selected\">Cancel selected</button><button type=\"button\" id=\"retry-selected\">Retry selected</button><span id=\"action-result\" role=\"status\"></span></div>"
      )
    }
    body.raw(
      "<table class=\"runs\" id=\"runs\"><thead><tr><th><input type=\"checkbox\" id=\"select-all\" aria-label=\"select all\"></th><th>Run</th><th>Deployment</th><th>State</th><th>Since</th><th>Enqueued</th><th>Tags</th></tr></thead><tbody>"
    )
    for run in answer.runs { body.add(Self.row(run)) }
    body.raw("</tbody></table>")
    if answer.runs.isEmpty { body.raw("<p class=\"empty\">No runs match.</p>") }
    if !answer.nextCursor.isEmpty {
      var next = request.uri.queryParameters.filter { $0.key != "cursor" }.map {
        "\(HTML.url(String($0.key)))=\(HTML.url(String($0.value)))"
      }
      next.append("cursor=\(HTML.url(answer.nextCursor))")
      body.link("/runs?" + next.joined(separator: "&"), "Older runs →", [("class", "next")])
    }
    // Live: the first page is refreshed while it is open (the script asks the API again).
    let live = cursor.isEmpty
    return Page(
      title: "Runs", body: body,
      data: .object([
        .init("page", .string("runs")), .init("live", .bool(live)), .init("query", .string(request.uri.query ?? "")),
      ]))
  }

  static func row(_ run: Gps_V1_RunInfo) -> HTML {
    var row = HTML()
    row.open("tr", [("data-run", run.id)])
    row.raw("<td>")
    row.open("input", [("type", "checkbox"), ("class", "select"), ("value", run.id), ("aria-label", "select run")])
    row.raw("</td><td>")
    row.link("/runs/\(run.id)", String(run.id.prefix(8)), [("class", "mono")])
    row.raw("</td><td>")
    row.link("/deployments/\(run.deployment)", run.deployment)
    row.raw("</td><td>")
    row.element("span", [("class", "state state-\(run.state.lowercased())")], text: run.state)
    row.raw("</td>")
    row.element("td", [("class", "time")], text: time(run.stateSinceMicros))
    row.element("td", [("class", "time")], text: time(run.enqueuedAtMicros))
    row.element("td", text: run.tags.joined(separator: ", "))
    row.close("tr")
    return row
  }

  static func time(_ micros: Int64) -> String {
    micros == 0 ? "" : String(Timestamp(micros: micros).description.prefix(23)) + "Z"
  }

  func run(_ request: Request, _ context: WebContext) async throws -> Page {
    let id = try context.parameters.require("id")
    let info = try await site.call(Gps_V1_Control.Method.GetRun.descriptor, context) { server in
      try await site.control.getRun(request: .with { $0.runID = id }, context: server)
    }
    let after = try Site.number(request.uri.queryParameters.get("after"), "after") ?? 0
    let (events, more) = try await site.events(
      from: max(after + 1, info.firstSequence), run: info.id, limit: 500, context)
    let types = site.resultTypes
    var body = HTML()
    body.raw("<h1>Run ")
    body.element("span", [("class", "mono")], text: info.id)
    body.raw("</h1><p>")
    body.element("span", [("class", "state state-\(info.state.lowercased())"), ("id", "run-state")], text: info.state)
    body.raw(" ")
    body.element("span", [("id", "state-message")], text: info.stateMessage)
    body.raw("</p><dl class=\"facts\">")
    func fact(_ name: String, _ value: String) {
      body.element("dt", text: name)
      body.element("dd", text: value)
    }
    body.element("dt", text: "Deployment")
    body.raw("<dd>")
    body.link("/deployments/\(info.deployment)", "\(info.deployment) v\(info.deploymentVersion)")
    body.raw("</dd>")
    fact("Enqueued", "\(Self.time(info.enqueuedAtMicros)) by \(info.enqueuedBy)")
    if info.scheduledStartMicros != 0 { fact("Scheduled start", Self.time(info.scheduledStartMicros)) }
    if info.startedAtMicros != 0 { fact("Started", Self.time(info.startedAtMicros)) }
    if !info.step.isEmpty { fact("Step", "\(info.step) (attempt \(info.stepAttempt))") }
    fact("Tags", info.tags.joined(separator: ", "))
    if !info.idempotencyKey.isEmpty { fact("Idempotency key", info.idempotencyKey) }
    fact("Attempts", String(info.attempts))
    fact("Events", "\(info.eventCount) (sequences \(info.firstSequence)–\(info.lastSequence))")
    if info.archived {
      fact("Archived", "its first events are in archived log segments: shown when the files are in DATA/archive/")
    }
    body.raw("</dl>")
    body.raw("<div class=\"actions\">")
    if !context.roles.allows(.operator) {
    } else if !["Completed", "Failed", "Cancelled", "Crashed", "TimedOut"].contains(info.state) {
      body.raw("<button type=\"button\" id=\"cancel-run\">Cancel</button>")
    } else {
      body.raw("<button type=\"button\" id=\"retry-run\">Retry</button>")
    }
    body.link(
      "/deployments/\(info.deployment)?run_again=\(HTML.url(info.id))", "Run again with these parameters",
      [("class", "button"), ("id", "run-again")])
    body.raw("<span id=\"action-result\" role=\"status\"></span></div>")
    body.raw("<h2>Parameters</h2>")
    body.element("pre", [("id", "parameters")], text: Self.pretty(info.parametersJson))
    if !info.result.isEmpty {
      body.raw("<h2>Result</h2>")
      let json = site.resultJSON(info)?.prettyText ?? "\(info.result.count) bytes of \(info.resultType)"
      body.element("p", text: info.resultType)
      body.element("pre", [("id", "result")], text: json)
    }
    body.raw("<h2>Timeline</h2><ol class=\"timeline\" id=\"timeline\">")
    var previous: RunState?
    for event in events {
      // Each change of state once (attempts keep a run Running).
      guard let state = EventText.stateAfter(event.event), state != previous else { continue }
      previous = state
      body.raw("<li>")
      body.element("span", [("class", "state state-\(state.rawValue.lowercased())")], text: state.rawValue)
      body.raw(" ")
      body.element("span", [("class", "time")], text: Self.time(event.event.timeMicros))
      body.raw("</li>")
    }
    body.raw("</ol><h2>Step attempts</h2>")
    body.raw(
      "<table class=\"attempts\" id=\"attempts\"><thead><tr><th>Step</th><th>Attempt</th><th>Outcome</th><th>Duration</th><th>Code</th><th>Message</th></tr></thead><tbody>"
    )
    for event in events {
      switch event.event.kind {
      case .attemptSucceeded(let attempt):
        body.add(
          Self.attemptRow(
            attempt.step, attempt.attempt, attempt.cached ? "Cached" : "Succeeded", attempt.durationMicros, "OK", ""))
      case .attemptFailed(let attempt):
        body.add(
          Self.attemptRow(
            attempt.step, attempt.attempt, attempt.retryable ? "Failed (retried)" : "Failed", attempt.durationMicros,
            attempt.statusName, attempt.message))
      default: break
      }
    }
    body.raw("</tbody></table><h2>Events</h2>")
    body.add(Self.eventTable(events, types: types, id: "events"))
    if more, let last = events.last {
      body.link("/runs/\(info.id)?after=\(last.sequence)", "Later events →", [("class", "next")])
    }
    let terminal = ["Completed", "Failed", "Cancelled", "Crashed", "TimedOut"].contains(info.state)
    return Page(
      title: "Run \(info.id.prefix(8))", body: body,
      data: .object([
        .init("page", .string("run")), .init("run", .string(info.id)), .init("live", .bool(!terminal)),
        .init("after", .string(String(events.last?.sequence ?? info.lastSequence))),
      ]))
  }

  static func attemptRow(
    _ step: String, _ attempt: UInt32, _ outcome: String, _ micros: Int64, _ code: String, _ message: String
  ) -> HTML {
    var row = HTML("<tr>")
    row.element("td", text: step)
    row.element("td", text: String(attempt))
    row.element("td", text: outcome)
    row.element("td", text: String(format: "%.3f s", Double(micros) / 1_000_000))
    row.element("td", text: code)
    row.element("td", text: message)
    row.raw("</tr>")
    return row
  }

  static func eventTable(_ events: [Gps_V1_HistoryEvent], types: ResultTypes, id: String, runs: Bool = false) -> HTML {
    var table = HTML()
    table.raw("<table class=\"events\" id=\"\(id)\"><thead><tr><th>Seq</th><th>Time</th>")
    if runs { table.raw("<th>Run</th>") }
    table.raw("<th>Event</th><th>Details</th></tr></thead><tbody>")
    for event in events { table.add(eventRow(event, types: types, runs: runs)) }
    table.raw("</tbody></table>")
    return table
  }

  static func eventRow(_ event: Gps_V1_HistoryEvent, types: ResultTypes, runs: Bool) -> HTML {
    var row = HTML()
    row.open("tr", [("data-sequence", String(event.sequence))])
    row.element("td", [("class", "mono")], text: String(event.sequence))
    row.element("td", [("class", "time")], text: time(event.event.timeMicros))
    if runs {
      row.raw("<td>")
      if let run = event.event.run { row.link("/runs/\(run)", String(run.description.prefix(8)), [("class", "mono")]) }
      row.raw("</td>")
    }
    row.element("td", text: event.event.typeName)
    row.element("td", [("class", "details")], text: EventText.details(event.event, types: types))
    row.raw("</tr>")
    return row
  }

  static func pretty(_ json: String) -> String {
    (try? JSONValue(parsing: json))?.prettyText ?? json
  }

  // MARK: Deployments

  func deployments(_ context: WebContext) async throws -> Page {
    let answer = try await site.call(Gps_V1_Control.Method.ListDeployments.descriptor, context) { server in
      try await site.control.listDeployments(request: .init(), context: server)
    }
    var body = HTML("<h1>Deployments</h1>")
    body.raw(
      "<table class=\"deployments\"><thead><tr><th>Deployment</th><th>Version</th><th>Status</th><th>Workers</th><th>Active</th><th>Waiting</th><th>Description</th></tr></thead><tbody>"
    )
    for deployment in answer.deployments {
      body.raw("<tr><td>")
      body.link("/deployments/\(deployment.name)", deployment.name)
      body.raw("</td>")
      body.element("td", text: String(deployment.version))
      body.raw("<td>")
      body.element("span", [("class", "status status-\(deployment.status.lowercased())")], text: deployment.status)
      body.raw("</td>")
      body.element("td", text: deployment.workers.map(\.id).joined(separator: ", "))
      body.element("td", text: String(deployment.activeRuns))
      body.element("td", text: String(deployment.waitingRuns))
      body.element("td", text: deployment.description_p)
      body.raw("</tr>")
    }
    body.raw("</tbody></table>")
    if answer.deployments.isEmpty { body.raw("<p class=\"empty\">No deployment is registered.</p>") }
    return Page(title: "Deployments", body: body)
  }

  func deployment(_ request: Request, _ context: WebContext) async throws -> Page {
    let (info, schema) = try await site.deploymentAnswer(
      try context.parameters.require("flow"), try context.parameters.require("name"), context)
    var initial: JSONValue = .object([])
    if let again = request.uri.queryParameters.get("run_again"), let run = try? site.control.run(again),
      let parameters = try? JSONValue(parsing: run.parametersJSON)
    {
      initial = parameters
    }
    var body = HTML()
    body.element("h1", text: info.name)
    body.element("p", text: info.description_p)
    body.raw("<dl class=\"facts\">")
    func fact(_ name: String, _ value: String) {
      body.element("dt", text: name)
      body.element("dd", text: value)
    }
    fact("Flow", info.flow)
    fact("Version", "\(info.version), registered \(Self.time(info.registeredAtMicros)) by \(info.registeredBy)")
    fact("Status", info.status)
    fact(
      "Workers",
      info.workers.map { "\($0.id) (seen \(Self.time($0.lastSeenMicros)))" }.joined(separator: ", "))
    fact("Tags", info.definition.tags.joined(separator: ", "))
    fact("Concurrency limit", info.definition.concurrencyLimit == 0 ? "none" : String(info.definition.concurrencyLimit))
    if info.definition.timeoutMicros > 0 {
      fact("Run timeout", String(format: "%.1f s", Double(info.definition.timeoutMicros) / 1_000_000))
    }
    fact("Runs", "\(info.activeRuns) active, \(info.waitingRuns) waiting")
    body.raw("</dl><h2>Steps</h2>")
    body.raw(
      "<table class=\"steps\"><thead><tr><th>Step</th><th>Attempts</th><th>Timeout</th><th>Result</th></tr></thead><tbody>"
    )
    for step in info.definition.steps {
      body.raw("<tr>")
      body.element("td", text: step.name)
      body.element("td", text: String(step.maxAttempts))
      body.element(
        "td", text: step.timeoutMicros == 0 ? "" : String(format: "%.1f s", Double(step.timeoutMicros) / 1_000_000))
      body.element("td", text: step.resultType)
      body.raw("</tr>")
    }
    body.raw("</tbody></table>")
    guard context.roles.allows(.operator) else {
      body.raw("<h2>Run</h2><p class=\"note\">Running a deployment needs the operator role; yours: ")
      body.add(context.roles.description)
      body.raw(".</p>")
      return Page(
        title: info.name, body: body,
        data: .object([.init("page", .string("deployment-view")), .init("deployment", .string(info.name))]))
    }
    body.raw("<h2>Run</h2>")
    body.raw(
      """
      <form id="run-form" class="run-form" novalidate>
      <div class="tabs" role="tablist"><button type="button" role="tab" id="tab-form" aria-selected="true">Form</button><button type="button" role="tab" id="tab-json" aria-selected="false">JSON</button></div>
      <div id="form-view"></div>
      <div id="json-view" hidden><textarea id="json-text" spellcheck="false" rows="16" aria-label="parameters as JSON"></textarea><p class="field-error" id="json-error"></p></div>
      <fieldset class="options"><legend>Options</legend>
      <label>Idempotency key <input id="opt-key"></label>
      <label>Tags <input id="opt-tags" placeholder="a, b"></label>
      <label>Start in <input id="opt-start-in" placeholder="90s, 5m, 2h"></label>
      <label>Start at <input id="opt-start-at" type="datetime-local"></label>
      </fieldset>
      <p class="form-error" id="form-error" role="alert"></p>
      <button type="submit" id="submit-run">Run</button>
      </form>
      """)
    return Page(
      title: info.name, body: body,
      data: .object([
        .init("page", .string("deployment")), .init("deployment", .string(info.name)), .init("schema", schema),
        .init("initial", initial),
      ]))
  }

  // MARK: History

  func history(_ request: Request, _ context: WebContext) async throws -> Page {
    let query = request.uri.queryParameters
    let after = try Site.number(query.get("after"), "after") ?? 0
    let fromTime = try Site.time(query.get("from_time"), "from_time")
    let run = query.get("run") ?? ""
    let (events, more) = try await site.events(from: after + 1, fromTime: fromTime, run: run, limit: 500, context)
    let types = site.resultTypes
    var body = HTML("<h1>History</h1>")
    body.raw("<form class=\"filters\" method=\"get\" action=\"/history\"><label>Run ")
    body.open("input", [("name", "run"), ("value", run), ("placeholder", "run id or prefix")])
    body.raw("</label><label>After sequence ")
    body.open("input", [("name", "after"), ("value", after == 0 ? "" : String(after)), ("inputmode", "numeric")])
    body.raw("</label><label>From ")
    body.open("input", [("name", "from_time"), ("type", "datetime-local"), ("value", query.get("from_time") ?? "")])
    body.raw("</label><button type=\"submit\">Show</button></form>")
    body.raw(
      "<div class=\"actions\"><button type=\"button\" id=\"verify\">Verify the log</button><span id=\"verify-result\" role=\"status\"></span></div>"
    )
    body.add(Self.eventTable(events, types: types, id: "history", runs: true))
    if more, let last = events.last {
      var next = query.filter { $0.key != "after" }.map { "\(HTML.url(String($0.key)))=\(HTML.url(String($0.value)))" }
      next.append("after=\(last.sequence)")
      body.link("/history?" + next.joined(separator: "&"), "Later events →", [("class", "next")])
    }
    return Page(
      title: "History", body: body,
      data: .object([
        .init("page", .string("history")), .init("run", .string(run)), .init("live", .bool(!more)),
        .init("after", .string(String(events.last?.sequence ?? after))),
      ]))
  }

  // MARK: Sign-in

  func login(_ request: Request, problem: String?) -> Page {
    var body = HTML("<h1>Sign in</h1>")
    body.raw("<form method=\"post\" action=\"/login\" class=\"login\">")
    body.open(
      "input", [("type", "hidden"), ("name", "next"), ("value", request.uri.queryParameters.get("next") ?? "/runs")])
    body.raw("<label>Token <input type=\"password\" name=\"token\" autocomplete=\"current-password\"></label>")
    body.raw("<button type=\"submit\">Sign in</button></form>")
    if let problem { body.element("p", [("class", "error")], text: problem) }
    return Page(title: "Sign in", body: body)
  }

  /// Forgets the sign-in: the cookie is expired, and the browser is sent to sign in again.
  func signOut() -> Response {
    var response = Response(status: .seeOther)
    response.headers[.location] = "/login"
    response.setCookie(
      Cookie(
        name: AccessMiddleware.cookie, value: "", maxAge: 0, path: "/", secure: site.secure, httpOnly: true,
        sameSite: .strict))
    return response
  }

  /// `next` when it is a path of this site, else `/`. Browsers drop tabs and newlines from URLs and
  /// read `\` as `/`, so `/\t/evil.example` and `/\\evil.example` are another site (`//…`): a path
  /// with any control character, a backslash or a leading `//` is not followed.
  static func sameSitePath(_ next: String) -> String {
    guard next.hasPrefix("/"), !next.hasPrefix("//"), next.utf8.count <= 2048,
      !next.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0 == "\\" })
    else { return "/" }
    return next
  }

  func signIn(_ request: Request) async throws -> Response {
    var request = request
    let body = String(buffer: try await request.collectBody(limit: 16 << 10))
    var fields: [String: String] = [:]
    for pair in body.split(separator: "&") {
      let parts = pair.split(separator: "=", maxSplits: 1).map {
        $0.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
      }
      if parts.count == 2 { fields[parts[0]] = parts[1] }
    }
    guard let token = fields["token"], site.tokens.name(of: token) != nil else {
      return login(request, problem: "That token is not one this server knows.").response(status: .unauthorized)
    }
    // Only a path of this site: never a redirect elsewhere.
    let next = Self.sameSitePath(fields["next"] ?? "/runs")
    var response = Response(status: .seeOther)
    response.headers[.location] = next
    response.setCookie(
      Cookie(
        name: AccessMiddleware.cookie, value: token, path: "/", secure: site.secure, httpOnly: true, sameSite: .strict))
    return response
  }
}
