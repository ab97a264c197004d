import ArgumentParser
import Control
import Flows
import Foundation
import GPSModel
import GRPCCore
import Queue
import RPC
import SwiftProtobuf

// `gps deployment run` and `gps enqueue`: a run of a deployment, with parameters from flags or JSON.

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
      result = try await Engine(queue: queue).enqueue(request, by: Caller(name: requester))
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
