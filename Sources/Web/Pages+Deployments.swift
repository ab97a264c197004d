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

// The pages of deployments: the list, and one deployment with its run form.
extension Pages {
  // MARK: Deployments

  func deployments(_ context: WebContext) async throws -> Page {
    _ = try site.caller(for: Gps_V1_Control.Method.ListDeployments.descriptor, context)
    let answer = site.engine.listDeployments(.init())
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
    let (info, schema) = try site.deploymentAnswer(
      try context.parameters.require("flow"), try context.parameters.require("name"), context)
    var initial: JSONValue = .object([])
    if let again = request.uri.queryParameters.get("run_again"), let run = try? await site.engine.run(named: again),
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
}
