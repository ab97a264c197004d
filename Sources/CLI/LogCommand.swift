import ArgumentParser
import Foundation
import Queue
import SwiftProtobuf

struct LogCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "log",
    abstract: "Check and repair the event log's storage.",
    subcommands: [LogVerify.self, LogRepair.self, LogAcceptLoss.self, LogAppendStress.self, QueueStress.self]
  )
}

/// Runs a queue operation; its error becomes the command's one-line failure.
func queueCall<T>(_ body: () throws(QueueError) -> T) throws(CommandFailure) -> T {
  do {
    return try body()
  } catch {
    throw CommandFailure(error.message + advice(for: error))
  }
}

struct DataDirectoryOption: ParsableArguments {
  @Option(help: "The data directory (the log is in its log/ folder).")
  var dataDir = "data"
}

struct LogVerify: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "verify",
    abstract: "Check every checksum, sequence continuity and the hash chain; exit 0 only if all hold.",
    discussion: "Reads without the lock, so it can run beside a server."
  )

  @OptionGroup var options: DataDirectoryOption

  func run() throws {
    try requireQueue(options.dataDir)
    let report = try queueCall { () throws(QueueError) in try LogVerifier(directory: options.dataDir).verify() }
    if let problem = report.problem {
      throw CommandFailure("log verify failed: \(problem)")
    }
    printLine(
      "log intact: \(report.segments) segments, \(report.batches) batches, \(report.records) records, \(report.bytes) bytes\(verifiedRange(report)); checksums, sequence continuity and the hash chain hold"
    )
  }
}

/// `, sequences 1–N` (or from an anchor), and what was left out at the end of a live log.
func verifiedRange(_ report: VerifyReport) -> String {
  var text = ""
  if let anchor = report.anchor {
    text +=
      ", sequences \(anchor.firstSequence)–\(report.lastSequence) from the anchor in log/ANCHOR (sequences 1–\(anchor.firstSequence - 1) were accepted as lost by \(anchor.acceptedBy) at \(anchor.acceptedAt))"
  } else {
    text += ", sequences 1–\(report.lastSequence)"
  }
  if let tail = report.unfinishedTail { text += " (an unfinished append in \(tail) is not counted)" }
  return text
}

struct LogRepair: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "repair",
    abstract: "Cut the log at its first bad batch, keeping the removed bytes in side files.",
    discussion: "Takes the data directory's lock: stop the server first."
  )

  @OptionGroup var options: DataDirectoryOption

  func run() throws {
    try requireQueue(options.dataDir)
    let report = try queueCall { () throws(QueueError) in
      try EventLog.repair(directory: options.dataDir, lock: commandLock(options.dataDir))
    }
    guard let segment = report.segment, let offset = report.offset else {
      printLine("nothing to repair: the log ends at sequence \(report.lastSequence)")
      return
    }
    let sequences =
      report.removedRecords == 0
      ? "no readable events" : "\(report.removedRecords) events (sequences from \(report.lastSequence + 1))"
    printLine(
      "cut segment \(segment) at byte offset \(offset): moved \(report.removedBytes) bytes holding \(report.removedBatches) intact batches and \(sequences) into \(report.sideFiles.count) side files in \(options.dataDir)/log (*.removed*); the log now ends at sequence \(report.lastSequence)"
    )
  }
}

struct LogAcceptLoss: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "accept-loss",
    abstract: "Accept that sequences whose segment files are gone are lost for good, and record it in the log.",
    discussion: """
      For a log whose first segments were deleted (it writes log/ANCHOR, so verify proves the rest
      from there; a snapshot must cover the lost sequences) or whose last segments were deleted or
      cut (snapshots that cover the lost sequences move to snapshots/lost/). Each loss becomes a
      LogLossAccepted event in the log. Restore the files instead if you can. Takes the data
      directory's lock: stop the server first.
      """
  )

  @OptionGroup var options: DataDirectoryOption

  func run() throws {
    try requireQueue(options.dataDir)
    let acceptance = try queueCall { () throws(QueueError) in
      try RunQueue.acceptLoss(directory: options.dataDir, acceptedBy: requester)
    }
    guard !acceptance.losses.isEmpty else {
      printLine("nothing to accept: no sequences are missing from \(options.dataDir)/log")
      return
    }
    for (loss, sequence) in zip(acceptance.losses, acceptance.noteSequences) {
      let moved = loss.setAside.isEmpty ? "" : "; moved \(loss.setAside.joined(separator: ", "))"
      printLine(
        "accepted the loss of sequences \(loss.missing.lowerBound)–\(loss.missing.upperBound) (\(loss.evidence))\(moved); recorded as event \(sequence)"
      )
    }
    if acceptance.anchor != nil {
      printLine("wrote \(options.dataDir)/log/ANCHOR: the log now begins there, and verify proves it from there")
    }
  }
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
    let log = try queueCall { () throws(QueueError) in try EventLog(directory: options.dataDir, options: logOptions) }
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
    let queue = try queueCall { () throws(QueueError) in
      try RunQueue(directory: options.dataDir, options: queueOptions)
    }
    let output = FileHandle.standardOutput
    let prefix = UUID().uuidString.prefix(8)
    try await withThrowingTaskGroup(of: Void.self) { group in
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
              try await queue.report(claim.token, .started(.init()))
              try await queue.report(claim.token, .completed(.with { $0.result = Data(key.utf8) }))
              output.write(Data("completed \(claim.run.id)\n".utf8))
            }
            count += 1
          }
        }
      }
      try await group.waitForAll()
    }
  }
}
