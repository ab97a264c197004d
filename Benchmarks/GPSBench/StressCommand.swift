// The stress drivers of the crash and scale tests, as `gps-bench` subcommands: processes that a
// test kills with SIGKILL at random moments (`append-stress`, `queue-stress`) or that write a large
// history (`generate-history`). They are not part of `gps`.
import ArgumentParser
import Foundation
import GPSModel
import GPSServerTesting
import Queue
import SwiftProtobuf

/// `gps-bench append-stress|queue-stress|generate-history …`; a failure is one line on stderr.
struct StressCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "gps-bench", subcommands: [LogAppendStress.self, QueueStress.self, GenerateHistory.self])

  static let names: Set<String> = ["append-stress", "queue-stress", "generate-history"]

  /// Runs the subcommand `arguments` name; an error is one line, `gps-bench: error: …`, exit 1.
  static func run(_ arguments: [String]) async {
    do {
      var command = try parseAsRoot(arguments)
      if var command = command as? any AsyncParsableCommand {
        try await command.run()
      } else {
        try command.run()
      }
    } catch let error as QueueError {
      FileHandle.standardError.write(Data("gps-bench: error: \(error.message)\n".utf8))
      Foundation.exit(1)
    } catch {
      exit(withError: error)
    }
  }
}

struct DataDirectoryOption: ParsableArguments {
  @Option(help: "The data directory (the log is in its log/ folder).")
  var dataDir = "data"
}

/// Appends from many tasks forever, printing `ack SEQUENCE PAYLOAD` once each record is durable.
/// The crash tests kill it with SIGKILL and check that every acknowledged record survived.
struct LogAppendStress: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "append-stress", abstract: "Append concurrently and print acknowledgements (for crash tests).",
    shouldDisplay: false)

  @OptionGroup var options: DataDirectoryOption

  @Option(help: "Concurrent appenders.")
  var tasks = 16

  @Option(help: "Segment size in bytes (small values exercise segment rolls).")
  var segmentSize = 64 * 1024

  func run() async throws {
    var logOptions = LogOptions()
    logOptions.segmentSize = segmentSize
    // A long-running writer, like a server: a second one is refused at once.
    logOptions.lock.role = .server
    let log = try EventLog(directory: options.dataDir, options: logOptions)
    let output = FileHandle.standardOutput
    try await withThrowingTaskGroup(of: Void.self) { group in
      for task in 0..<tasks {
        group.addTask {
          var count = 0
          while true {
            let payload = "task-\(task)-\(count)-" + String(repeating: "x", count: (task * 37 + count) % 300)
            let range = try await log.append([Array(payload.utf8)])
            output.write(Data("ack \(range.lowerBound) \(payload)\n".utf8))
            count += 1
          }
        }
      }
      try await group.waitForAll()
    }
  }
}

/// Runs runs through the queue from many tasks forever, printing `enqueued ID KEY` and
/// `completed ID` once each is durable. The crash tests kill it with SIGKILL and check that every
/// acknowledged run and completion survived, and that the log still replays.
struct QueueStress: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "queue-stress", abstract: "Enqueue, claim and complete runs concurrently (for crash tests).",
    shouldDisplay: false)

  @OptionGroup var options: DataDirectoryOption

  @Option(help: "Concurrent clients.")
  var tasks = 8

  @Option(help: "Events between periodic snapshots.")
  var snapshotEvery = 500

  @Flag(help: "Keep terminal runs in the run index (committed every 10 ms) instead of snapshots.")
  var index = false

  @Flag(
    help:
      "With --index: archive every sealed segment the index covers, all the time. Leases last 250 ms, and those a killed process held expire before new runs start, so its runs stop holding their segments."
  )
  var archive = false

  func run() async throws {
    var queueOptions = QueueOptions()
    queueOptions.log.segmentSize = 64 * 1024
    queueOptions.snapshotEvery = snapshotEvery
    if index {
      var indexOptions = RunIndexOptions()
      indexOptions.commitInterval = .milliseconds(10)
      indexOptions.retireBatch = 16
      queueOptions.runIndex = indexOptions
    }
    queueOptions.log.lock.role = .server
    // A run not finished keeps its segments in the log: the runs a killed round held must expire.
    if archive { queueOptions.leaseDuration = .milliseconds(250) }
    let queue = try RunQueue(directory: options.dataDir, options: queueOptions)
    let output = FileHandle.standardOutput
    let prefix = UUID().uuidString.prefix(8)
    if archive {
      // The leases the killed process held expire first (a restart gives them one lease duration).
      while queue.withState({ state in state.runs.values.contains { $0.lease != nil } }) {
        _ = try await queue.tick()
        try await Task.sleep(for: .milliseconds(20))
      }
    }
    try await withThrowingTaskGroup(of: Void.self) { group in
      if archive {
        group.addTask {
          while true {
            _ = try queue.archive(before: .sequence(.max), archivedBy: "queue-stress")
            try await Task.sleep(for: .milliseconds(5))
          }
        }
        group.addTask {
          while true {
            _ = try await queue.tick()
            try await Task.sleep(for: .milliseconds(100))
          }
        }
      }
      for task in 0..<tasks {
        group.addTask {
          var count = 0
          while true {
            let key = "\(prefix)-\(task)-\(count)"
            var request = EnqueueRequest(
              deployment: "stress/queue", flow: "stress", parametersJSON: #"{"n":\#(count)}"#)
            request.idempotencyKey = key
            let run = try await queue.enqueue(request).run
            output.write(Data("enqueued \(run.id) \(key)\n".utf8))
            if let claim = try await queue.claim(scheduler: "stress-\(task)") {
              do {
                try await queue.report(claim.token, .started(.init()))
                try await queue.report(claim.token, .completed(.with { $0.result = Data(key.utf8) }))
                output.write(Data("completed \(claim.run.id)\n".utf8))
              } catch let error as QueueError where archive && error.code == .leaseLost {
                // Its 250 ms lease expired on a loaded machine: the run is claimed again later.
              }
            }
            count += 1
          }
        }
      }
      try await group.waitForAll()
    }
  }
}

/// Writes a large history through the queue's commands (fsync off), with the run index on as in a
/// server, printing `RUNS runs: resident BYTES, IN_MEMORY in memory` as it goes: the scale test reads
/// the lines to check that memory stays flat while terminal runs grow.
struct GenerateHistory: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "generate-history", abstract: "Write completed runs through the queue (for scale tests).",
    shouldDisplay: false)

  @OptionGroup var options: DataDirectoryOption

  @Option(help: "Completed runs to write.")
  var runs = 200_000

  @Option(help: "Runs left Scheduled at the end.")
  var active = 1_000

  @Option(help: "Runs between two progress lines.")
  var every = 20_000

  @Option(help: "Segment size in bytes.")
  var segmentSize = 64 << 20

  func run() async throws {
    var queueOptions = QueueOptions()
    queueOptions.log.fsync = .none
    queueOptions.log.segmentSize = segmentSize
    queueOptions.runIndex = RunIndexOptions()
    let queue = try RunQueue(directory: options.dataDir, options: queueOptions)
    defer { queue.close() }
    _ = try await HistoryGenerator.generate(queue, runs: runs, active: active, progressEvery: every) { done in
      // As a server does every second: drops the lateness marks of runs long claimed.
      _ = try? await queue.tick()
      try? queue.flushIndex()
      print("\(done) runs: resident \(residentBytes()), \(queue.withState { $0.runs.count }) in memory")
    }
    try queue.flushIndex()
    print("generated \(runs) completed runs and \(active) Scheduled; resident \(residentBytes())")
  }
}
