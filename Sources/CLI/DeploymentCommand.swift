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
  try await query(location) { control in
    if let name {
      return [try await control.getDeployment(.with { $0.name = name }, options: failFast)]
    }
    return try await control.listDeployments(Gps_V1_ListDeploymentsRequest(), options: failFast).deployments
  } log: { queue in
    let state = queue.state
    let catalog = DeploymentCatalog()
    if let name {
      guard let version = state.deployment(named: name) else {
        throw CommandFailure(
          DeploymentCatalog.unknown(name, known: state.deployments.keys.sorted()).message
            + "; `gps deployment ls` lists them")
      }
      return [Gps_V1_DeploymentInfo(version, catalog: catalog, state: state, withDefinition: true)]
    }
    return state.deployments.keys.sorted().compactMap { state.deployment(named: $0) }.map {
      Gps_V1_DeploymentInfo($0, catalog: catalog, state: state, withDefinition: false)
    }
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
      let version = try await engine.handOver(request, by: requester)
      return Gps_V1_DeploymentInfo(
        version, catalog: engine.catalog, state: engine.queue.state, withDefinition: false)
    }
    switch output {
    case .json: printLine(info.summaryJSON.prettyText)
    case .table: printLine("deployment \(info.name): served by \(info.owner)'s workers from now on")
    }
  }
}

struct DeploymentRun: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "run",
    abstract: "Enqueue a run of a deployment with JSON parameters.",
    discussion: runDiscussion
  )

  @OptionGroup var options: RunOptions

  func run() async throws { try await options.enqueue() }
}

/// `gps enqueue`: the same as `gps deployment run`.
struct EnqueueCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "enqueue",
    abstract: "Enqueue a run of a deployment (short for `gps deployment run`).",
    discussion: runDiscussion
  )

  @OptionGroup var options: RunOptions

  func run() async throws { try await options.enqueue() }
}

let runDiscussion = """
  Parameters: --param NAME=VALUE (repeatable; VALUE is JSON, a bare word is a string), or
  --params JSON, --params @file.json, --params - (standard input). Every problem is reported with
  its path, and a rejected run writes nothing. The run goes through the server recorded in the data
  directory; with no server running, it is appended to the log directly and starts when a server
  starts. With --watch, each event is shown as it happens; the exit status is 0 for Completed,
  1 Failed, 2 TimedOut, 3 Cancelled, 4 Crashed, and 5 when the run could not be followed to its
  end (the server went away); 1 also for a run that was not enqueued. Example:
    gps deployment run server-flow/MyPrefectDeployer --param data_info='{"object_storage_urls": ["a"], "dataset": "b"}' --watch
  """

struct RunOptions: ParsableArguments {
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

  @Option(parsing: .unconditional, help: "Start after this long, e.g. 30s, 5m.", transform: DurationArgument.parse)
  var startIn: DurationArgument?

  @Option(help: "Start at this time: RFC 3339, e.g. 2026-11-26T18:00:00Z.")
  var startAt: String?

  @Flag(help: "Show the run's events as they happen; exit when it ends (0 only if Completed).")
  var watch = false

  @Option(help: "table or json (the run as JSON; with --watch, one JSON event per line).")
  var output = OutputFormat.table

  @OptionGroup var location: QueueLocation

  func validate() throws {
    if startIn != nil, startAt != nil { throw ValidationError("give --start-in or --start-at, not both") }
    if let startAt, parseTime(startAt) == nil {
      throw ValidationError("--start-at '\(startAt)' is not a time; use RFC 3339, e.g. 2026-11-26T18:00:00Z")
    }
  }

  func enqueue() async throws {
    // One request, validated by the engine against the deployment's registered version: the
    // server's, or, without a server, the same engine over the log below.
    let start = startIn.map { SystemClock().now() + $0.duration } ?? startAt.flatMap(parseTime)
    let parameters: JSONValue
    do {
      parameters = try ParameterArguments.assemble(params: params, paramsArgument: paramsArgument)
    } catch {
      throw CommandFailure("\(name): \(error.message)")
    }
    let request = Gps_V1_EnqueueRunRequest.with {
      $0.deployment = name
      $0.parametersJson = parameters.text
      // Every enqueue carries a key, so that one whose answer was lost (the server wrote it, then
      // the connection broke) can be retried safely, and the offline fallback below never doubles it.
      $0.idempotencyKey = idempotencyKey.flatMap { $0.isEmpty ? nil : $0 } ?? "cli-" + UUID().uuidString.lowercased()
      $0.tags = tags
      $0.scheduledStartMicros = start?.micros ?? 0
      $0.enqueuedBy = requester
    }
    // Through the server; with none running (or a killed one's address left behind), offline.
    let route = try location.route()
    do {
      try await route.run { control in
        try await enqueue(request, control: control, server: route.server!)
      } viaLog: {
        try await enqueueOffline(request)
      }
    } catch let failure as QueueRoute.ServerError {
      throw enqueueFailure(failure.error, request: request, server: failure.server)
    }
  }

  /// No server: appends to the log directly (taking the data directory's lock briefly), through
  /// the same engine call as the server's. Only `gps server start` creates a queue: a mistyped
  /// --data-dir must not start a new one.
  func enqueueOffline(_ request: Gps_V1_EnqueueRunRequest) async throws {
    try requireQueue(location.dataDir)
    let result: EnqueueResult
    do {
      let queue = try openQueueOffline(location.dataDir)
      defer { queue.close() }
      result = try await Engine(queue: queue).enqueue(request, by: requester)
    } catch let error as FlowsError {
      let hint = error.code == .unknownDeployment ? "; `gps deployment ls` lists them" : ""
      throw CommandFailure("\(name): \(error.message)\(hint)")
    }
    report(Gps_V1_RunInfo(result.run), created: result.created, offline: true)
    if watch {
      try await RunWatcher(output: output).follow(
        runID: result.run.id, from: result.run.firstSequence, dataDirectory: location.dataDir)
    }
  }

  /// One line for a failed enqueue through the server: refused (nothing was written), or not
  /// confirmed (it may have been written: the key makes a retry safe).
  func enqueueFailure(_ rpc: RPCError, request: Gps_V1_EnqueueRunRequest, server: ServiceAddress) -> CommandFailure {
    let size = request.parametersJson.utf8.count
    switch rpc.code {
    case .invalidArgument, .notFound, .alreadyExists, .failedPrecondition, .permissionDenied, .unauthenticated,
      .unimplemented:
      return describe(rpc, server: server)
    case .resourceExhausted where rpc.message.hasPrefix("the run's parameters are"):
      return CommandFailure(rpc.message + "; `gps server start --max-parameter-bytes N` sets the limit")
    case .resourceExhausted:
      return CommandFailure(
        "the run's parameters are \(size) bytes of JSON, too large for the server at \(server) (\(String(rpc.message.prefix(200)))); nothing was enqueued"
      )
    default:
      let key = JSONValue.quoted(request.idempotencyKey)
      return CommandFailure(
        "the server at \(server) did not confirm the enqueue (\(rpc.code): \(String(rpc.message.prefix(200)))): the run may or may not be enqueued; run the same command with --id-key \(key) to find out safely (it returns the run if it exists and enqueues it if not)"
      )
    }
  }

  func enqueue(_ request: Gps_V1_EnqueueRunRequest, control: ControlClient, server: ServiceAddress) async throws {
    let response = try await control.enqueue(request, options: failFast)
    report(response.run, created: response.created, offline: false)
    guard watch else { return }
    do {
      try await RunWatcher(output: output).watch(runID: response.run.id, control: control)
    } catch let failure as CommandFailure {
      throw failure
    } catch let exit as ExitCode {
      throw exit
    } catch {
      // The run was enqueued; only following it failed: its own exit status, not the run's.
      var failure = describe(error, server: server)
      failure.message = "run \(response.run.id) is enqueued, but its watch ended: " + failure.message
      failure.status = CommandFailure.watchLost
      throw failure
    }
  }

  func report(_ run: Gps_V1_RunInfo, created: Bool, offline: Bool) {
    if output == .json, !watch {
      printLine(EventText.json(run).prettyText)
      return
    }
    let line =
      created
      ? "enqueued run \(run.id) of \(run.deployment): \(run.state)"
      : "run \(run.id) already has idempotency key \(JSONValue.quoted(run.idempotencyKey)): \(run.state)"
    let note =
      offline
      ? " (no server is running: appended to \(location.dataDir)/log; it starts when `gps server start` runs)" : ""
    if output == .json {
      writeStandardError(line + note + "\n")
    } else {
      printLine(line + note)
    }
  }
}

/// An RFC 3339 time, e.g. 2026-11-26T18:00:00Z or with fractional seconds or an offset.
func parseTime(_ text: String) -> Timestamp? {
  let plain = ISO8601DateFormatter()
  let fractional = ISO8601DateFormatter()
  fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
  return (plain.date(from: text) ?? fractional.date(from: text)).map(Timestamp.init)
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
