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

// The pages of runs: the list with its filters, and one run with its steps, attempts and events.
extension Pages {
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
    _ = try site.caller(for: Gps_V1_Control.Method.GetRun.descriptor, context)
    let info = try await site.engine.runInfo(.with { $0.runID = id })
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
}
