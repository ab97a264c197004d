import ArgumentParser
import Control
import Flows
import Foundation
import GPSModel
import GRPCCore
import Queue

struct HistoryCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "history",
    abstract: "Audit the queue's history: replay every event, the state at any point, verify the log.",
    discussion: "Reads the log read-only, without the lock: works with or without a running server.",
    subcommands: [HistoryReplay.self, HistoryState.self, HistoryVerify.self]
  )
}

enum HistoryFormat: String, ExpressibleByArgument, CaseIterable {
  case table, json, jsonl
}

/// A point of the history as users give it: a sequence number, or an RFC 3339 time.
struct HistoryPoint: ExpressibleByArgument {
  var point: PointInTime

  init?(argument: String) {
    if let sequence = UInt64(argument) {
      point = .sequence(sequence)
    } else if let time = parseTime(argument) {
      point = .time(time)
    } else {
      return nil
    }
  }

  static var defaultCompletionKind: CompletionKind { .default }

  /// Whether the event at `sequence` with `time` lies at or before this point.
  func includes(_ sequence: UInt64, _ time: Timestamp) -> Bool {
    switch point {
    case .sequence(let last): sequence <= last
    case .time(let last): time <= last
    }
  }
}

/// A progress bar on stderr (a counter when the total is unknown), only when stderr is a terminal.
final class ProgressBar {
  let total: UInt64?
  let label: String
  let enabled = isatty(2) == 1
  var shown = -1
  var lastShown = ContinuousClock.now

  init(total: UInt64?, label: String) {
    self.total = total.map { max($0, 1) }
    self.label = label
  }

  func update(_ done: UInt64) {
    guard enabled else { return }
    guard let total else {
      // A counter, redrawn at most ten times a second.
      guard ContinuousClock.now - lastShown > .milliseconds(100) else { return }
      lastShown = .now
      shown = 0
      writeStandardError("\r\(label): \(done) events")
      return
    }
    let percent = Int(min(100, done * 100 / total))
    guard percent != shown else { return }
    shown = percent
    let width = 30
    let filled = percent * width / 100
    writeStandardError(
      "\r\(label) [\(String(repeating: "#", count: filled))\(String(repeating: ".", count: width - filled))] \(percent)%"
    )
  }

  func finish() {
    if enabled, shown >= 0 { writeStandardError("\r\u{1B}[K") }
  }
}

struct HistoryReplay: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "replay",
    abstract: "Every event in order, with sequence, time, run, type and details.",
    discussion: """
      --output jsonl prints one JSON object per event, documented in docs/history.md:
        {"sequence":N,"time":"…Z","time_micros":N,"run":"UUID","run_event":N,"type":"RunClaimed","details":{…}}
      """
  )

  @Option(help: "Only this run's events (its id or first 8 or more characters).")
  var run: String?

  @Option(help: "From this sequence number or RFC 3339 time on.")
  var since: HistoryPoint?

  @Option(help: "Up to this sequence number or RFC 3339 time.")
  var until: HistoryPoint?

  @Option(help: "table, json (one array) or jsonl (one object per line).")
  var output = HistoryFormat.table

  @Flag(help: "Keep going: print new events as they are appended (Ctrl-C stops).")
  var follow = false

  @Option(help: "The data directory.")
  var dataDir = "data"

  @OptionGroup var storeOption: StoreOption

  func validate() throws {
    if follow, until != nil { throw ValidationError("--follow and --until exclude each other") }
    if follow, output == .json { throw ValidationError("--follow needs --output table or jsonl") }
    let empty: Bool =
      switch (since?.point, until?.point) {
      case (.sequence(let from)?, .sequence(let to)?): from > to
      case (.time(let from)?, .time(let to)?): from > to
      default: false
      }
    if empty { throw ValidationError("--since is after --until, so no event lies between them; swap them") }
  }

  func run() async throws {
    let dataDir = try await storeOption.directory(orElse: dataDir)
    try requireQueue(dataDir)
    var runID: RunID?
    var start: UInt64 = 1
    // Results decode with the deployments registered so far: those before `start` from the
    // state, later ones as their events pass.
    var types = ResultTypes.none
    if let run {
      let queue = try readQueue(dataDir)
      types = ResultTypes(state: queue.state)
      let found = try rpcCall { () throws(RPCError) in try RunFilter.find(run, in: queue) }
      runID = found.id
      start = found.firstSequence
    }
    if case .sequence(let sequence)? = since?.point { start = max(start, sequence) }
    let sinceTime: Timestamp? = if case .time(let time)? = since?.point { time } else { nil }
    var json: [JSONValue] = []
    func row(_ sequence: String, _ time: String, _ run: String, _ type: String, _ details: String) -> String {
      String(repeating: " ", count: max(0, 8 - sequence.count)) + sequence + "  "
        + time.padding(toLength: 27, withPad: " ", startingAt: 0) + "  "
        + run.padding(toLength: 8, withPad: " ", startingAt: 0)
        + "  " + type.padding(toLength: 20, withPad: " ", startingAt: 0) + "  " + details
    }
    if output == .table { printLine(row("SEQ", "TIME", "RUN", "EVENT", "DETAILS")) }
    let body = { (sequence: UInt64, event: RunEvent) -> Bool in
      if let until, !until.includes(sequence, event.time) { return false }
      if case .deploymentRegistered(let registered) = event.kind { types.add(registered.definition) }
      if let runID, event.run != runID { return true }
      if let sinceTime, event.time < sinceTime { return true }
      switch output {
      case .jsonl: printLine(EventText.json(sequence: sequence, event: event, types: types).text)
      case .json: json.append(EventText.json(sequence: sequence, event: event, types: types))
      case .table:
        printLine(
          row(
            String(sequence), event.time.description, event.run.map { String($0.description.prefix(8)) } ?? "-",
            event.typeName, EventText.details(event, types: types)
          ).trimmingTrailingSpaces)
      }
      return true
    }
    do {
      if follow {
        try await LogReader(directory: dataDir).follow(from: start) { record in
          try body(record.sequence, RunEvent(record))
        }
      } else {
        try QueueHistory(directory: dataDir).events(from: start, body)
      }
    } catch let error as QueueError {
      throw CommandFailure("reading the history failed: \(error.message); check it with `gps history verify`")
    }
    if output == .json { printLine(JSONValue.array(json).prettyText) }
  }
}

struct HistoryState: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "state",
    abstract: "The state of one run, or of the whole queue, as it was at a point of the history.")

  @Option(help: "After this sequence number, or as of this RFC 3339 time.")
  var at: HistoryPoint

  @Option(help: "Only this run (its id or first 8 or more characters).")
  var run: String?

  @Option(help: "table or json.")
  var output = OutputFormat.table

  @Option(parsing: .unconditional, help: "Runs listed for the whole queue (newest first).")
  var limit = 50

  @Option(help: "The data directory.")
  var dataDir = "data"

  @OptionGroup var storeOption: StoreOption

  func run() async throws {
    let dataDir = try await storeOption.directory(orElse: dataDir)
    try requireQueue(dataDir)
    // How far the replay is (its end is not known without reading the log).
    let progress = ProgressBar(total: nil, label: "replaying")
    let queue = try queueCall { () throws(QueueError) in
      try QueueReader(directory: dataDir, at: at.point) { progress.update($0) }
    }
    progress.finish()
    let state = queue.state
    if let run {
      let found = try rpcCall { () throws(RPCError) in try RunFilter.find(run, in: queue) }
      let info = Gps_V1_RunInfo(found)
      switch output {
      case .json: printLine(EventText.json(info).prettyText)
      case .table:
        printLine("as of event \(state.lastSequence) (\(state.lastTime)):")
        printLine(
          "run \(info.id) \(info.deployment): \(info.state) since \(Timestamp(micros: info.stateSinceMicros))"
            + (info.stateMessage.isEmpty ? "" : ": \(info.stateMessage)"))
        if !info.step.isEmpty {
          printLine("step \(info.step), attempt \(info.stepAttempt); \(info.attempts) attempts in all")
        }
      }
      return
    }
    let listed = try rpcCall { () throws(RPCError) in
      try RunFilter.list(queue, filter: RunFilter(), from: nil, limit: UInt32(clamping: max(1, limit))).runs
    }
    let counts = RunState.allCases.filter { state.counts[$0] > 0 }.map { ($0, state.counts[$0]) }
    // The deployments as registered by then: each one's newest version at that point.
    let deployments = state.deployments.keys.sorted().compactMap { state.deployment(named: $0) }
    switch output {
    case .json:
      printLine(
        JSONValue.object([
          .init("sequence", .number(String(state.lastSequence))),
          .init("time", .string(state.lastTime.description)),
          .init("runs", .number(String(state.counts.total))),
          .init("counts", .object(counts.map { .init($0.0.rawValue, .number(String($0.1))) })),
          .init(
            "deployments",
            .array(
              deployments.map { version in
                .object([
                  .init("name", .string(version.name)), .init("version", .number(String(version.version))),
                  .init("registered_at", .string(version.registeredAt.description)),
                  .init("registered_by", .string(version.registeredBy)),
                ])
              })),
          .init("latest_runs", .array(listed.map { EventText.json($0) })),
        ]).prettyText)
    case .table:
      printLine("as of event \(state.lastSequence) (\(state.lastTime)): \(state.counts.total) runs")
      printLine(counts.map { "\($0.0): \($0.1)" }.joined(separator: ", "))
      if !deployments.isEmpty {
        printLine(
          "deployments: "
            + deployments.map { "\($0.name) v\($0.version) (registered \($0.registeredAt))" }.joined(separator: ", "))
      }
      var rows = [["ID", "DEPLOYMENT", "STATE", "SINCE"]]
      for run in listed {
        rows.append([run.id, run.deployment, run.state, Timestamp(micros: run.stateSinceMicros).description])
      }
      if !listed.isEmpty { for line in table(rows) { printLine(line) } }
    }
  }
}

struct HistoryVerify: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "verify",
    abstract:
      "Check checksums, sequence continuity and the hash chain, then replay every event through the state machine.",
    discussion: "Exit 0 only when everything holds; otherwise the first problem, precisely."
  )

  @Option(help: "The data directory.")
  var dataDir = "data"

  @OptionGroup var storeOption: StoreOption

  func run() async throws {
    let dataDir = try await storeOption.directory(orElse: dataDir)
    try requireQueue(dataDir)
    let report = try queueCall { () throws(QueueError) in try LogVerifier(directory: dataDir).verify() }
    if let problem = report.problem {
      throw CommandFailure("history verify failed: storage: \(problem)")
    }
    // Every transition, from an empty queue (snapshots are not trusted here), up to the last
    // sequence whose storage was verified: a live server may have appended more since.
    let progress = ProgressBar(total: report.records, label: "replaying")
    var state = QueueState()
    // Where the replay of transitions began, when not at the log's first event.
    var replayedFrom = ""
    // Events passed over by recorded decisions (log/SKIPPED), and the notes that record them.
    var skipped = SkippedEvents()
    // The run index compared with the replay at its checkpoint.
    var indexChecked: (sequence: UInt64, outcome: IndexCheck.Outcome)?
    do {
      if let anchor = report.anchor,
        try !queueCall({ () throws(QueueError) in try LogReader(directory: dataDir).readsFromStart() })
      {
        // The events before the anchor were archived and deleted, or lost: start from a state at
        // or after it that the log vouches for — a snapshot, or the run index's checkpoint (whose
        // reader replays the log after it through the state machine).
        if let snapshot = try queueCall({ () throws(QueueError) in
          try QueueHistory(directory: dataDir).newestSnapshotState()
        }) {
          state = snapshot
          replayedFrom = "; transitions replayed from the snapshot at event \(snapshot.lastSequence)"
        } else if let reader = try queueCall({ () throws(QueueError) in
          try QueueReader.fromIndex(directory: dataDir, at: .sequence(report.lastSequence))
        }), let checkpoint = reader.checkpointSequence, checkpoint + 1 >= anchor.firstSequence {
          state = reader.state
          replayedFrom =
            "; the log begins at its anchor (event \(anchor.firstSequence)), so transitions were replayed from the run index's checkpoint at event \(checkpoint) on"
        } else {
          throw CommandFailure(
            "history verify failed: the log begins at its anchor (sequence \(anchor.firstSequence)) and neither a snapshot nor the run index's checkpoint matches it, so its transitions cannot be replayed"
          )
        }
      } else if report.anchor != nil {
        replayedFrom = "; transitions replayed from event 1, through the archived segments in DATA/archive/"
      }
      skipped = try queueCall { () throws(QueueError) in
        try SkippedEvents.read(logDirectory: dataDir + "/log", fileSystem: PosixFileSystem())
      }
      state.skip(skipped)
      let index = try IndexCheck(directory: dataDir)
      try QueueHistory(directory: dataDir).events(from: state.lastSequence + 1) { sequence, event in
        guard sequence <= report.lastSequence else { return false }
        try state.apply(event, sequence: sequence)
        if let index, sequence == index.sequence { indexChecked = (index.sequence, try index.compare(with: state)) }
        if sequence % 4096 == 0 { progress.update(sequence) }
        return true
      }
    } catch let error as QueueError {
      progress.finish()
      throw CommandFailure(
        "history verify failed: \(error.message)" + (error.refusedEvent == nil ? "" : advice(for: error)))
    }
    progress.finish()
    // Each decision to skip an event is vouched for by its note in the hash chain.
    for decision in skipped.decisions {
      guard let note = decision.noteSequence else {
        throw CommandFailure(
          "history verify failed: log/SKIPPED passes over \(decision.eventDescription) but its LogEventSkipped note was never written; open the queue once (`gps server start`) to write it"
        )
      }
      var recorded: UInt64?
      if note >= (report.anchor?.firstSequence ?? 1) {
        try QueueHistory(directory: dataDir).events(from: note) { sequence, event in
          if sequence == note, case .logEventSkipped(let skip) = event.kind { recorded = skip.sequence }
          return false
        }
        guard recorded == decision.sequence else {
          throw CommandFailure(
            "history verify failed: log/SKIPPED passes over \(decision.eventDescription) and names event \(note) as its note, but the log holds no LogEventSkipped note for it there; the file was altered: restore it"
          )
        }
      }
    }
    switch indexChecked {
    case (_, .differs(let difference))?:
      throw CommandFailure(
        "history verify failed: \(difference); the log holds; the run index is derived from it: stop the server, remove \(dataDir)/index/ and start it again to rebuild it"
      )
    case (let sequence, .agrees(let runs))?:
      replayedFrom += "; the run index agrees with the log at its checkpoint (event \(sequence), \(runs) runs)"
    case (let sequence, .moved(let to))?:
      replayedFrom +=
        "; the run index was not compared (the server indexed from event \(sequence) to \(to) meanwhile: verify again when it is idle)"
    case nil:
      break
    }
    if !skipped.decisions.isEmpty {
      replayedFrom +=
        "; passed over by recorded decision (log/SKIPPED, each a LogEventSkipped note in the log): "
        + skipped.decisions.map { "\($0.eventDescription) by \($0.skippedBy) at \($0.skippedAt): \($0.reason)" }
        .joined(separator: "; ")
    }
    guard state.lastSequence == report.lastSequence else {
      throw CommandFailure(
        "history verify failed: the replay ended at event \(state.lastSequence) but the verified log holds \(report.lastSequence)"
      )
    }
    printLine(
      "history verified: \(report.records) events of \(state.counts.total) runs in \(report.segments) segments\(verifiedRange(report)); checksums, sequence continuity, the hash chain and every transition hold\(replayedFrom)"
    )
  }
}

extension String {
  /// Without the spaces that pad an empty last column; the right-aligned first column keeps its own.
  fileprivate var trimmingTrailingSpaces: String {
    var line = self
    while line.last == " " { line.removeLast() }
    return line
  }
}
