import ArgumentParser
import Control
import Flows
import Foundation
import GRPCCore
import Queue
import RPC
import SwiftProtobuf

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
    let deployment = try lookUpDeployment(name)
    var request: EnqueueRequest
    let start = startIn.map { SystemClock().now() + $0.duration } ?? startAt.flatMap(parseTime)
    do {
      // Checked here too, so a bad run is refused the same way with or without a server.
      let parameters = try ParameterArguments.assemble(params: params, paramsArgument: paramsArgument)
      request = try deployment.enqueueRequest(
        parametersJSON: parameters.text, idempotencyKey: idempotencyKey ?? "", tags: tags, scheduledStart: start,
        enqueuedBy: requester)
    } catch {
      throw CommandFailure("\(name): \(error.message)")
    }
    // Every enqueue carries a key, so that one whose answer was lost (the server wrote it, then
    // the connection broke) can be retried safely, and the offline fallback below never doubles it.
    if request.idempotencyKey.isEmpty { request.idempotencyKey = "cli-" + UUID().uuidString.lowercased() }
    if let (server, explicit) = try location.serverAddress() {
      do {
        try await enqueue(request, server: server)
        return
      } catch let failure as CommandFailure {
        throw failure
      } catch let exit as ExitCode {
        throw exit
      } catch  where !explicit && isUnreachable(error) {
        // A server recorded its address but is gone (killed): enqueue offline below.
      } catch {
        throw enqueueFailure(error, request: request, server: server)
      }
    }
    // No server: append to the log directly (taking the data directory's lock briefly).
    // Only `gps server start` creates a queue: a mistyped --data-dir must not start a new one.
    try requireQueue(location.dataDir)
    let result: EnqueueResult
    do {
      let queue = try openQueueOffline(location.dataDir)
      defer { queue.close() }
      result = try await queue.enqueue(request)
    }
    report(Gps_V1_RunInfo(result.run), created: result.created, offline: true)
    if watch {
      try await RunWatcher(output: output).follow(
        runID: result.run.id, from: result.run.firstSequence, dataDirectory: location.dataDir)
    }
  }

  /// One line for a failed enqueue through the server: refused (nothing was written), or not
  /// confirmed (it may have been written: the key makes a retry safe).
  func enqueueFailure(_ error: any Error, request: EnqueueRequest, server: ServiceAddress) -> CommandFailure {
    guard let rpc = error as? RPCError else { return CommandFailure("\(error)") }
    let size = request.parametersJSON.utf8.count
    switch rpc.code {
    case .invalidArgument, .notFound, .alreadyExists, .failedPrecondition, .permissionDenied, .unauthenticated,
      .unimplemented:
      return describe(error, server: server)
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

  func enqueue(_ request: EnqueueRequest, server: ServiceAddress) async throws {
    try await withControlClient(server, credentials: try location.credentials()) { control in
      let response = try await control.enqueue(
        .with {
          $0.deployment = request.deployment
          $0.parametersJson = request.parametersJSON
          $0.idempotencyKey = request.idempotencyKey
          $0.tags = tags
          $0.scheduledStartMicros = request.scheduledStart?.micros ?? 0
          $0.enqueuedBy = request.enqueuedBy
        }, options: failFast)
      report(response.run, created: response.created, offline: false)
      if watch {
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
