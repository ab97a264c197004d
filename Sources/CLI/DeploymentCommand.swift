import ArgumentParser
import Flows
import Foundation
import Queue

struct DeploymentCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "deployment",
    abstract: "List, inspect and run deployments.",
    subcommands: [DeploymentList.self, DeploymentInspect.self, DeploymentRun.self]
  )
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
  case table, json
}

/// The deployments this `gps` knows (registered in Swift, see the README).
let deploymentRegistry = DeploymentRegistry.standard

func lookUpDeployment(_ name: String) throws(CommandFailure) -> Deployment {
  do {
    return try deploymentRegistry.deployment(named: name)
  } catch {
    throw CommandFailure(error.message + "; `gps deployment ls` lists them")
  }
}

struct DeploymentList: ParsableCommand {
  static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the deployments.")

  @Option(help: "table or json.")
  var output = OutputFormat.table

  func run() {
    let deployments = deploymentRegistry.names.compactMap { deploymentRegistry.deployments[$0] }
    switch output {
    case .json:
      printLine(JSONValue.array(deployments.map(\.summaryJSON)).prettyText)
    case .table:
      var rows = [["NAME", "FLOW", "PARAMETERS", "TAGS", "LIMIT"]]
      for deployment in deployments {
        rows.append([
          deployment.name, deployment.flow.name,
          deployment.parameters.parameters.map { "\($0.name): \($0.type)" }.joined(separator: ", "),
          deployment.tags.joined(separator: ","), deployment.concurrencyLimit.map(String.init) ?? "-",
        ])
      }
      for line in table(rows) { printLine(line) }
    }
  }
}

struct DeploymentInspect: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "inspect", abstract: "Show a deployment: its steps, defaults and the JSON Schema of its parameters.")

  @Argument(help: "The deployment, e.g. server-flow/MyPrefectDeployer.")
  var name: String

  func run() throws {
    let deployment = try lookUpDeployment(name)
    var summary = deployment.summaryJSON
    if case .object(var members) = summary {
      members.append(.init("parameter_schema", deployment.parameterSchema))
      summary = .object(members)
    }
    printLine(summary.prettyText)
  }
}

struct DeploymentRun: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "run",
    abstract: "Enqueue a run of a deployment with JSON parameters.",
    discussion: """
      Parameters: --param NAME=VALUE (repeatable; VALUE is JSON, a bare word is a string), or
      --params JSON, --params @file.json, --params - (standard input). Every problem is reported with
      its path, and a rejected run writes nothing. Example:
        gps deployment run server-flow/MyPrefectDeployer --param data_info='{"object_storage_urls": ["a"], "dataset": "b"}'
      """
  )

  @Argument(help: "The deployment, e.g. server-flow/MyPrefectDeployer.")
  var name: String

  @Option(name: .customLong("param"), help: "NAME=VALUE; VALUE is JSON (a bare word is a string). Repeatable.")
  var params: [String] = []

  @Option(name: .customLong("params"), help: "All parameters as a JSON object, @file.json, or - for standard input.")
  var paramsArgument: String?

  @Option(name: .customLong("id-key"), help: "Idempotency key: running again with the same key returns the same run.")
  var idempotencyKey: String?

  @Option(name: .customLong("tag"), help: "A tag for the run (besides the deployment's). Repeatable.")
  var tags: [String] = []

  @Option(help: "Start after this long, e.g. 30s, 5m.")
  var startIn: DurationArgument?

  @Option(help: "The data directory.")
  var dataDir = "data"

  func run() async throws {
    let deployment = try lookUpDeployment(name)
    let request: EnqueueRequest
    do {
      let parameters = try ParameterArguments.assemble(params: params, paramsArgument: paramsArgument)
      let start = startIn.map { SystemClock().now() + $0.duration }
      request = try deployment.enqueueRequest(
        parametersJSON: parameters.text, idempotencyKey: idempotencyKey ?? "", tags: tags, scheduledStart: start,
        enqueuedBy: "\(NSUserName())@\(ProcessInfo.processInfo.hostName)")
    } catch {
      throw CommandFailure("\(name): \(error.message)")
    }
    // No server yet: append to the log directly (taking the data directory's lock briefly).
    let queue = try queueCall { () throws(QueueError) in try RunQueue(directory: dataDir) }
    defer { queue.close() }
    let result = try await queue.enqueue(request)
    let run = result.run
    printLine(
      result.created
        ? "enqueued run \(run.id) of \(run.deployment): \(run.state), in \(dataDir)/log"
        : "run \(run.id) already has idempotency key \(JSONValue.quoted(run.idempotencyKey)): \(run.state)")
  }
}

extension Deployment {
  /// The deployment as `ls --output json` and `inspect` show it.
  var summaryJSON: JSONValue {
    .object([
      .init("name", .string(name)),
      .init("flow", .string(flow.name)),
      .init("description", .string(description)),
      .init(
        "parameters",
        .array(
          parameters.parameters.map { parameter in
            .object([
              .init("name", .string(parameter.name)),
              .init("type", .string(parameter.type)),
              .init("required", .bool(parameter.required && parameter.defaultJSON == nil)),
              .init("default", parameter.defaultJSON.flatMap { try? JSONValue(parsing: $0) } ?? .null),
            ])
          })),
      .init(
        "steps",
        .array(
          flow.steps.map { step in
            .object([
              .init("name", .string(step.name)),
              .init("result_type", .string(step.resultType)),
              .init("timeout_seconds", .number(String(Double(step.timeout.components.seconds)))),
              .init("max_attempts", .number(String(step.retry.maxAttempts))),
              .init("cache_results", .bool(step.cacheResults)),
            ])
          })),
      .init("tags", .array(tags.map(JSONValue.string))),
      .init("concurrency_limit", concurrencyLimit.map { .number(String($0)) } ?? .null),
      .init("crash_requeues", .number(String(crashPolicy.maxRequeues))),
    ])
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
