import ArgumentParser
import Control
import Flows
import Foundation
import GPSModel
import GRPCCore
import Queue
import RPC
import SwiftProtobuf

struct FlowRunCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "flow-run",
    abstract: "List, inspect, cancel and retry runs.",
    subcommands: [FlowRunList.self, FlowRunInspect.self, FlowRunCancel.self, FlowRunRetry.self]
  )
}

struct FlowRunList: AsyncParsableCommand {
  static let configuration = CommandConfiguration(commandName: "ls", abstract: "List runs, newest first.")

  @Option(help: "Only runs in this state (Scheduled, Late, Pending, Running, Completed, Failed, …). Repeatable.")
  var state: [String] = []

  @Option(help: "Only runs of this deployment.")
  var deployment: String?

  @Option(help: "Only runs with this tag.")
  var tag: String?

  @Option(parsing: .unconditional, help: "At most this many runs.")
  var limit = 20

  @Option(help: "Continue a listing where an earlier one stopped (the cursor it printed).")
  var cursor: String?

  @Option(help: "table or json.")
  var output = OutputFormat.table

  @OptionGroup var location: QueueLocation

  @OptionGroup var storeOption: StoreOption

  func validate() throws {
    guard limit >= 1 else { throw ValidationError("--limit must be at least 1") }
    for name in state where RunState(name: name) == nil {
      throw ValidationError(
        "--state \(name) is unknown; use one of \(RunState.allCases.map(\.rawValue).joined(separator: ", "))")
    }
  }

  func run() async throws {
    let request = Gps_V1_ListRunsRequest.with {
      $0.states = state
      $0.deployment = deployment ?? ""
      $0.tag = tag ?? ""
      $0.limit = UInt32(clamping: limit)
      $0.cursor = cursor ?? ""
    }
    // A page is bounded in bytes as well as in runs: pages are followed until `--limit` runs
    // (big runs come a few per page), and what is left is said, never silently dropped.
    let (runs, next) = try await query(location, store: storeOption) { queue in
      try await Self.pages(of: request, limit: limit) { page in try await queue.listRuns(page) }
    }
    switch output {
    case .json:
      printLine(JSONValue.array(runs.map { EventText.json($0) }).prettyText)
    case .table:
      var rows = [["ID", "DEPLOYMENT", "STATE", "ENQUEUED", "STEP", "MESSAGE"]]
      for run in runs {
        rows.append([
          run.id, run.deployment, run.state, Timestamp(micros: run.enqueuedAtMicros).description,
          run.step.isEmpty ? "-" : "\(run.step)#\(run.stepAttempt)", String(run.stateMessage.prefix(80)),
        ])
      }
      for line in table(rows) { printLine(line) }
      if runs.isEmpty { printLine("(no runs)") }
    }
    if let next {
      FileHandle.standardError.write(
        Data(
          "gps: \(runs.count) runs shown; more match: add --cursor \(next) for the next ones, or raise --limit\n".utf8))
    }
  }

  /// Runs from `request`'s pages, up to `limit`, and the cursor of what is left (nil: nothing).
  static func pages(
    of request: Gps_V1_ListRunsRequest, limit: Int,
    _ page: (Gps_V1_ListRunsRequest) async throws -> Gps_V1_ListRunsResponse
  ) async throws -> (runs: [Gps_V1_RunInfo], next: String?) {
    var listing = Listing(request: request, limit: limit)
    while let next = listing.nextRequest { listing.add(try await page(next)) }
    return (listing.runs, listing.left)
  }

  /// Pages gathered so far, and the request of the next one while more are wanted.
  struct Listing {
    var request: Gps_V1_ListRunsRequest
    let limit: Int
    var runs: [Gps_V1_RunInfo] = []
    /// The cursor of what matched beyond `limit`.
    var left: String?
    var done = false

    var nextRequest: Gps_V1_ListRunsRequest? {
      guard !done else { return nil }
      var next = request
      next.limit = UInt32(clamping: limit - runs.count)
      return next
    }

    mutating func add(_ answer: Gps_V1_ListRunsResponse) {
      runs += answer.runs
      if answer.nextCursor.isEmpty {
        done = true
      } else if runs.count >= limit || answer.runs.isEmpty {
        done = true
        left = answer.nextCursor
      } else {
        request.cursor = answer.nextCursor
      }
    }
  }
}

struct FlowRunInspect: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "inspect",
    abstract: "Show a run: parameters, state, every step attempt with timings and errors, result.")

  @Argument(help: "The run id (or its first 8 or more characters).")
  var id: String

  @Option(help: "table or json.")
  var output = OutputFormat.table

  @OptionGroup var location: QueueLocation

  @OptionGroup var storeOption: StoreOption

  func run() async throws {
    let (run, events, types) = try await query(location, store: storeOption) { queue in
      let run = try await queue.getRun(.with { $0.runID = id })
      return (run, try await queue.events(of: run), await queue.resultTypes())
    }
    switch output {
    case .json:
      var json = EventText.json(run, types: types)
      if case .object(var members) = json {
        members.append(.init("attempts_detail", .array(Attempt.all(in: events).map(\.json))))
        members.append(
          .init(
            "history",
            .array(events.map { EventText.json(sequence: $0.sequence, event: $0.event, types: types) })))
        json = .object(members)
      }
      printLine(json.prettyText)
    case .table:
      printLine("run         \(run.id)")
      printLine("deployment  \(run.deployment)")
      printLine(
        "state       \(run.state) since \(Timestamp(micros: run.stateSinceMicros))"
          + (run.stateMessage.isEmpty ? "" : ": \(run.stateMessage)"))
      if run.parametersTruncatedBytes > 0 {
        printLine(
          "parameters  \(run.parametersJson.prefix(2000))… (cut: \(run.parametersTruncatedBytes) bytes in all; `gps history replay --run \(run.id) --output jsonl` shows them whole)"
        )
      } else {
        printLine("parameters  \(run.parametersJson)")
      }
      printLine(
        "enqueued    \(Timestamp(micros: run.enqueuedAtMicros))"
          + (run.enqueuedBy.isEmpty ? "" : " by \(run.enqueuedBy)")
          + (run.idempotencyKey.isEmpty ? "" : ", id key \(JSONValue.quoted(run.idempotencyKey))"))
      if !run.tags.isEmpty { printLine("tags        \(run.tags.joined(separator: ", "))") }
      printLine(
        "events      \(run.eventCount) (log sequences \(run.firstSequence)–\(run.lastSequence)); claims \(run.claims), re-queues \(run.requeues), retries \(run.userRetries)"
      )
      if run.archived {
        printLine(
          "archived    its first events are in archived log segments: shown when the files are in DATA/archive/")
      }
      let attempts = Attempt.all(in: events)
      if !attempts.isEmpty {
        printLine("attempts:")
        var rows = [["STEP", "ATTEMPT", "STARTED", "DURATION", "OUTCOME"]]
        for attempt in attempts {
          rows.append([
            attempt.step, String(attempt.attempt), attempt.started.description, attempt.duration, attempt.outcome,
          ])
        }
        for line in table(rows) { printLine("  " + line) }
      }
      if let result = EventText.json(of: run.result, type: run.resultType, types: types) {
        printLine("result (\(run.resultType)):")
        printLine(result.prettyText)
      }
    }
  }
}

/// One step attempt as `inspect` shows it, gathered from the run's events.
struct Attempt {
  var step: String
  var attempt: UInt32
  var started: Timestamp
  var duration = "-"
  var outcome = "running"

  static func all(in events: [Gps_V1_HistoryEvent]) -> [Attempt] {
    var attempts: [Attempt] = []
    for event in events.map(\.event) {
      switch event.kind {
      case .attemptStarted(let e):
        attempts.append(Attempt(step: e.step, attempt: e.attempt, started: event.time))
      case .attemptSucceeded(let e):
        if let index = attempts.lastIndex(where: { $0.step == e.step && $0.attempt == e.attempt }) {
          attempts[index].duration = String(format: "%.1f ms", Double(e.durationMicros) / 1000)
          attempts[index].outcome = e.cached ? "cached" : "succeeded"
        }
      case .attemptFailed(let e):
        if let index = attempts.lastIndex(where: { $0.step == e.step && $0.attempt == e.attempt }) {
          attempts[index].duration = String(format: "%.1f ms", Double(e.durationMicros) / 1000)
          attempts[index].outcome =
            "failed: \(e.statusName): \(e.message)" + (e.retryable ? " (will retry)" : "")
        }
      case .leaseExpired(let e):
        // The attempt in progress went with its scheduler. Logs written before LeaseExpired named
        // it have only the attempt left open.
        let why =
          "lost: scheduler \(e.scheduler) stopped heartbeating (its lease expired at \(Timestamp(micros: e.expiredAtMicros)))"
        for index in attempts.indices where attempts[index].outcome == "running" {
          if e.lostStep.isEmpty || (attempts[index].step == e.lostStep && attempts[index].attempt == e.lostAttempt) {
            attempts[index].outcome = why
          }
        }
      default:
        break
      }
    }
    return attempts
  }

  var json: JSONValue {
    .object([
      .init("step", .string(step)), .init("attempt", .number(String(attempt))),
      .init("started", .string(started.description)), .init("duration", .string(duration)),
      .init("outcome", .string(outcome)),
    ])
  }
}

struct FlowRunCancel: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "cancel",
    abstract: "Cancel a run: at once if no scheduler holds it, otherwise its scheduler stops it.")

  @Argument(help: "The run id (or its first 8 or more characters).")
  var id: String

  @Option(help: "Why (recorded in the history).")
  var reason = ""

  @Option(help: "table or json (the run as JSON).")
  var output = OutputFormat.table

  @OptionGroup var location: QueueLocation

  func run() async throws {
    let request = Gps_V1_RunRequest.with {
      $0.runID = id
      $0.requestedBy = requester
      $0.reason = reason
    }
    let run = try await change(location) { control in
      try await control.cancelRun(request, options: failFast)
    } offline: { engine in
      Gps_V1_RunInfo(try await engine.cancel(request, by: Caller(name: requester)))
    }
    printLine(output == .json ? EventText.json(run).prettyText : "run \(run.id): \(run.state)")
  }
}

struct FlowRunRetry: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "retry", abstract: "Run a finished run again, with the same id and parameters.")

  @Argument(help: "The run id (or its first 8 or more characters).")
  var id: String

  @Option(help: "table or json (the run as JSON).")
  var output = OutputFormat.table

  @OptionGroup var location: QueueLocation

  func run() async throws {
    let request = Gps_V1_RunRequest.with {
      $0.runID = id
      $0.requestedBy = requester
    }
    let run = try await change(location) { control in
      try await control.retryRun(request, options: failFast)
    } offline: { engine in
      Gps_V1_RunInfo(try await engine.retry(request, by: Caller(name: requester)))
    }
    printLine(output == .json ? EventText.json(run).prettyText : "run \(run.id): \(run.state)")
  }
}
