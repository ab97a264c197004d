import ArgumentParser
import Control
import Flows
import Foundation
import GPSModel
import GRPCCore
import Queue
import RPC
import SwiftProtobuf

struct DeploymentCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "deployment",
    abstract: "List, inspect and run deployments.",
    subcommands: [DeploymentList.self, DeploymentInspect.self, DeploymentRun.self, DeploymentHandOver.self]
  )
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
  case table, json
}

/// The deployments as the server knows them (with their workers), or as the log records them.
func deploymentInfos(_ location: QueueLocation, name: String? = nil) async throws -> [Gps_V1_DeploymentInfo] {
  try await query(location) { queue in
    if let name {
      return [try await queue.getDeployment(.with { $0.name = name })]
    }
    return try await queue.listDeployments(Gps_V1_ListDeploymentsRequest()).deployments
  }
}

struct DeploymentList: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ls", abstract: "List the deployments registered with the server, their versions and workers.")

  @Option(help: "table or json.")
  var output = OutputFormat.table

  @OptionGroup var location: QueueLocation

  func run() async throws {
    let deployments = try await deploymentInfos(location)
    switch output {
    case .json:
      printLine(JSONValue.array(deployments.map(\.summaryJSON)).prettyText)
    case .table:
      if deployments.isEmpty {
        printLine("no deployments are registered; a worker registers its own (`gps server start` serves server-flow)")
        return
      }
      let now = SystemClock().now()
      var rows = [["NAME", "VERSION", "STATUS", "WORKERS", "RUNS", "TAGS"]]
      for deployment in deployments {
        let workers =
          deployment.workers.isEmpty
          ? "-"
          : deployment.workers.map { "\($0.id) (\(ago(now - Timestamp(micros: $0.lastSeenMicros))))" }
            .joined(separator: ", ")
        rows.append([
          deployment.name, String(deployment.version), deployment.status, workers,
          "\(deployment.activeRuns) active, \(deployment.waitingRuns) waiting",
          deployment.tags.isEmpty ? "-" : deployment.tags.joined(separator: ","),
        ])
      }
      for line in table(rows) { printLine(line) }
    }
  }
}

/// `3s ago`, `2m ago`, `1h ago`.
func ago(_ duration: Duration) -> String {
  let seconds = max(0, duration.components.seconds)
  if seconds < 120 { return "\(seconds)s ago" }
  if seconds < 7200 { return "\(seconds / 60)m ago" }
  return "\(seconds / 3600)h ago"
}

struct DeploymentInspect: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "inspect",
    abstract: "Show a deployment: its version, workers, steps, defaults and the JSON Schema of its parameters.")

  @Argument(help: "The deployment, e.g. server-flow/MyPrefectDeployer.")
  var name: String

  @OptionGroup var location: QueueLocation

  func run() async throws {
    guard let deployment = try await deploymentInfos(location, name: name).first else { return }
    var summary = deployment.summaryJSON
    if case .object(var members) = summary {
      members.append(
        .init("parameter_schema", (try? JSONValue(parsing: deployment.parameterSchemaJson)) ?? .object([])))
      summary = .object(members)
    }
    printLine(summary.prettyText)
  }
}

struct DeploymentHandOver: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "hand-over",
    abstract: "Give a deployment to another principal: from then on only its workers serve it (admin only).",
    discussion: """
      A worker registers, claims, heartbeats and reports only for deployments its principal (the
      name of its token) registered first. When a team or a worker's token changes, an admin hands
      the deployment over; the hand-over is an event in the log, with who did it and why.
      """)

  @Argument(help: "The deployment, e.g. inventory/quote.")
  var name: String

  @Option(help: "The principal (a name in the server's tokens file) that serves it from now on.")
  var to: String

  @Option(help: "Why (recorded in the log).")
  var note = ""

  @Option(help: "table or json (the deployment as JSON).")
  var output = OutputFormat.table

  @OptionGroup var location: QueueLocation

  func run() async throws {
    let request = Gps_V1_HandOverDeploymentRequest.with {
      $0.deployment = name
      $0.to = to
      $0.note = note
    }
    let info = try await change(location) { control in
      try await control.handOverDeployment(request, options: failFast)
    } offline: { engine in
      try await engine.handOver(request, by: Caller(name: requester))
    }
    switch output {
    case .json: printLine(info.summaryJSON.prettyText)
    case .table: printLine("deployment \(info.name): served by \(info.owner)'s workers from now on")
    }
  }
}

extension Gps_V1_DeploymentInfo {
  /// The deployment as `ls --output json` and `inspect` show it.
  var summaryJSON: JSONValue {
    let definition = self.definition
    var members: [JSONValue.Member] = [
      .init("name", .string(name)),
      .init("flow", .string(flow)),
      .init("version", .number(String(version))),
      .init("status", .string(status)),
      .init(
        "registered_at", registeredAtMicros == 0 ? .null : .string(Timestamp(micros: registeredAtMicros).description)),
      .init("registered_by", .string(registeredBy)),
      .init("owner", owner.isEmpty ? .null : .string(owner)),
      .init(
        "workers",
        .array(
          workers.map { worker in
            .object([
              .init("id", .string(worker.id)),
              .init("last_seen", .string(Timestamp(micros: worker.lastSeenMicros).description)),
              .init("principal", .string(worker.principal)),
            ])
          })),
      .init("active_runs", .number(String(activeRuns))),
      .init("waiting_runs", .number(String(waitingRuns))),
      .init("description", .string(description_p)),
      .init("tags", .array(tags.map(JSONValue.string))),
    ]
    guard hasDefinition else {
      members.append(.init("steps", .array(steps.map(JSONValue.string))))
      return .object(members)
    }
    members.append(
      .init(
        "parameters",
        .array(
          definition.parameters.map { parameter in
            .object([
              .init("name", .string(parameter.name)),
              .init("type", .string(parameter.type)),
              .init("required", .bool(parameter.required && parameter.defaultJson.isEmpty)),
              .init("default", (try? JSONValue(parsing: parameter.defaultJson)) ?? .null),
              .init("description", .string(parameter.description_p)),
            ])
          })))
    members.append(
      .init(
        "steps",
        .array(
          definition.steps.map { step in
            .object([
              .init("name", .string(step.name)),
              .init("result_type", .string(step.resultType)),
              .init("timeout_seconds", .number(String(Double(step.timeoutMicros) / 1_000_000))),
              .init("max_attempts", .number(String(step.maxAttempts))),
              .init("cache_results", .bool(step.cacheResults)),
            ])
          })))
    members.append(
      .init(
        "concurrency_limit", definition.concurrencyLimit == 0 ? .null : .number(String(definition.concurrencyLimit))))
    members.append(.init("crash_requeues", .number(String(definition.crashPolicy.maxRequeues))))
    return .object(members)
  }
}

/// Rows as left-aligned columns separated by two spaces.
func table(_ rows: [[String]]) -> [String] {
  let widths = (0..<(rows.first?.count ?? 0)).map { column in rows.map { $0[column].count }.max() ?? 0 }
  return rows.map { row in
    row.enumerated().map { column, cell in
      column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
    }.joined(separator: "  ")
  }
}
