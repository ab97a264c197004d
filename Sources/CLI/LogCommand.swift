import ArgumentParser
import Control
import Foundation
import GPSModel
import PostgresStore
import Queue
import SwiftProtobuf

struct LogCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "log",
    abstract: "Check and repair the event log's storage.",
    subcommands: [
      LogVerify.self, LogArchive.self, LogRepair.self, LogAcceptLoss.self, LogSkipEvent.self, LogMigrate.self,
    ]
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

struct LogVerify: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "verify",
    abstract: "Check every checksum, sequence continuity and the hash chain; exit 0 only if all hold.",
    discussion: "Reads without the lock, so it can run beside a server."
  )

  @OptionGroup var options: DataDirectoryOption

  @OptionGroup var storeOption: StoreOption

  func run() async throws {
    let dataDir = try await storeOption.directory(orElse: options.dataDir)
    try requireQueue(dataDir)
    let report = try queueCall { () throws(QueueError) in try LogVerifier(directory: dataDir).verify() }
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
      ", sequences \(anchor.firstSequence)–\(report.lastSequence) from the anchor in log/ANCHOR (\(anchor.headDescription))"
    if let note = report.archive?.confirmedBy { text += ", which event \(note) of the log confirms" }
  } else {
    text += ", sequences 1–\(report.lastSequence)"
  }
  if let tail = report.unfinishedTail { text += " (an unfinished append in \(tail) is not counted)" }
  if let archive = report.archive {
    let present =
      archive.batches > 0
      ? "\(archive.segmentsPresent) archived segments in archive/ verified (\(archive.records) records, \(archive.bytes) bytes)"
      : "no archived segment is in archive/"
    let absent =
      archive.absent.isEmpty
      ? ""
      : "; not in archive/ (deleted or kept elsewhere): sequences \(archive.absent.map { "\($0.lowerBound)–\($0.upperBound)" }.joined(separator: ", "))"
    text += "; \(present)\(absent)"
  }
  return text
}

struct LogArchive: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "archive",
    abstract: "Move sealed log segments older than a time or sequence to DATA/archive/ (or delete them).",
    discussion: """
      Takes the segments whose every event is before --before and that the run index already covers;
      the live segment always stays, and so does every segment from the one holding the first event
      of the oldest run not finished yet. Their runs stay listed and inspectable (marked archived), and
      their events are readable again whenever the files are in DATA/archive/. The log records the
      archive (a LogSegmentsArchived event) and log/ANCHOR says where the retained log begins, so
      `gps log verify` proves it from there. Through the server when one runs, else on the log.
      """
  )

  @Option(
    help: ArgumentHelp(
      "A duration (90d: older than 90 days), a time (2026-09-01T00:00:00Z) or a sequence (12000).",
      valueName: "age|time|sequence"))
  var before: String

  @Flag(help: "Delete the segments instead of keeping them in DATA/archive/.")
  var delete = false

  @Flag(help: "Only say what would be archived.")
  var dryRun = false

  @OptionGroup var location: QueueLocation

  func validate() throws {
    _ = try Self.bound(before, now: SystemClock().now())
  }

  /// `--before` as a bound: a whole number is a sequence, a duration an age, else an RFC 3339 time.
  static func bound(_ text: String, now: Timestamp) throws -> ArchiveBound {
    if let sequence = UInt64(text) { return .sequence(sequence) }
    if let age = try? DurationArgument.parse(text) {
      return .time(Timestamp(micros: now.micros - Int64(age.duration / .microseconds(1))))
    }
    if let time = parseTime(text) { return .time(time) }
    throw ValidationError(
      "--before '\(text.prefix(40))' is neither a duration (90d), an RFC 3339 time (2026-09-01T00:00:00Z) nor a sequence (12000)"
    )
  }

  func run() async throws {
    let bound = try Self.bound(before, now: SystemClock().now())
    let request = Gps_V1_ArchiveLogRequest.with {
      switch bound {
      case .time(let time): $0.beforeTimeMicros = time.micros
      case .sequence(let sequence): $0.beforeSequence = sequence
      }
      $0.delete = delete
      $0.dryRun = dryRun
      $0.archivedBy = requester
    }
    let response = try await change(location) { control in
      try await control.archiveLog(request)
    } offline: { engine in
      Gps_V1_ArchiveLogResponse(try await engine.archive(request, by: Caller(name: requester)))
    }
    let why = response.stoppedBecause.isEmpty ? "" : " (\(response.stoppedBecause))"
    guard !response.segments.isEmpty else {
      printLine("nothing to archive\(why); the log begins at sequence \(response.logStart)")
      return
    }
    let verb = dryRun ? "would \(delete ? "delete" : "archive")" : (delete ? "deleted" : "archived")
    let place = delete ? "" : " to \(location.dataDir)/archive/"
    let note = response.noteSequence == 0 ? "" : "; recorded as event \(response.noteSequence)"
    printLine(
      "\(verb) \(response.segments.count) segments\(place) (sequences \(response.firstArchived)–\(response.lastArchived), \(response.bytes) bytes)\(note); the log \(dryRun ? "would begin" : "now begins") at sequence \(dryRun ? response.lastArchived + 1 : response.logStart)\(why)"
    )
  }
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
    try refuseStoreCopy(options.dataDir, change: "repaired")
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
    try refuseStoreCopy(options.dataDir, change: "changed")
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

struct LogSkipEvent: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "skip-event",
    abstract: "Open a log without events this version of GPS refuses, and record the decision in the log.",
    discussion: """
      For a log that does not open because it holds an event the reducer refuses (one an older
      version of GPS accepted, e.g. a time it no longer allows). `gps history verify` names the
      event. Each sequence given must be one the reducer refuses, and every event after them must
      apply. The decision goes to log/SKIPPED (every replay passes over exactly these events) and
      becomes a LogEventSkipped event in the log, with who decided and why; `history verify` names
      the skipped events. What the event did is lost: a skipped enqueue is a run that never was.
      Takes the data directory's lock: stop the server first.
      """
  )

  @Argument(help: "The sequences of the events to skip.")
  var sequences: [UInt64]

  @Option(help: "Why (recorded in the log).")
  var reason: String

  @OptionGroup var options: DataDirectoryOption

  func run() throws {
    try requireQueue(options.dataDir)
    try refuseStoreCopy(
      options.dataDir, change: "changed",
      instead: "skipping an event is for the file log: every server of a cluster replays the store's log as it is")
    let decisions = try queueCall { () throws(QueueError) in
      try RunQueue.skipEvents(Set(sequences), directory: options.dataDir, skippedBy: requester, reason: reason)
    }
    for decision in decisions {
      printLine(
        "skipped \(decision.eventDescription): the reducer refuses it (\(decision.refusal)); recorded as event \(decision.noteSequence.map(String.init) ?? "?") and in \(options.dataDir)/log/SKIPPED"
      )
    }
  }
}

struct LogMigrate: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "migrate",
    abstract: "Move the log between a data directory and PostgreSQL: the same sequences, bytes and hashes.",
    discussion: """
      --from DIR --to postgres://…: copies the directory's log into the store's database (empty, or
      holding the beginning of this log: an interrupted migration goes on). No server may use the
      directory or the store meanwhile. Then `gps server start --store postgres://…` serves it; the
      directory may stay its --data-dir (it is a copy of the store's log).
      --from postgres://… --to DIR: copies the store's log into a new data directory of the file log.
      The password comes from PGPASSFILE or ~/.pgpass, or --store-password-file.
      """
  )

  @Option(help: "Where the log is: a data directory, or postgres://USER@HOST:PORT/DATABASE.")
  var from: String

  @Option(help: "Where it goes: postgres://USER@HOST:PORT/DATABASE, or a new data directory.")
  var to: String

  @Option(help: "A file whose first line is the database password.")
  var storePasswordFile: String?

  func validate() throws {
    guard StoreLocation.isPostgres(from) != StoreLocation.isPostgres(to) else {
      throw ValidationError(
        "give one data directory and one postgres://… URL: --from DIR --to postgres://… or --from postgres://… --to DIR"
      )
    }
  }

  func run() async throws {
    let url = StoreLocation.isPostgres(from) ? from : to
    if StoreLocation.isPostgres(to) { try requireQueue(from) }
    do throws(QueueError) {
      let store = try await PostgresStore.open(
        try StoreLocation(url: url), password: StorePassword.resolve(passwordFile: storePasswordFile))
      defer { store.close() }
      let started = ContinuousClock.now
      if StoreLocation.isPostgres(to) {
        let report = try await LogMigration.toStore(directory: from, store: store) { report in
          printLine("… \(report.copiedBatches) batches (\(report.copiedEvents) events) copied")
        }
        printLine(
          "migrated \(from) to \(store.location): \(report.copiedBatches) batches (\(report.copiedEvents) events) copied\(report.skippedBatches > 0 ? ", \(report.skippedBatches) were there already" : "") in \(seconds(ContinuousClock.now - started)) s; both logs end at sequence \(report.lastSequence) with hash \(hex(report.lastHash))"
        )
      } else {
        let report = try await LogMigration.fromStore(store: store, directory: to)
        printLine(
          "migrated \(store.location) to \(to): \(report.copiedEvents) events in \(seconds(ContinuousClock.now - started)) s; both logs end at sequence \(report.lastSequence) with hash \(hex(report.lastHash)); `gps history verify --data-dir \(to)` checks it"
        )
      }
    } catch {
      throw CommandFailure(error.message)
    }
  }

  func hex(_ bytes: [UInt8]) -> String { bytes.prefix(8).map { String(format: "%02x", $0) }.joined() + "…" }
}
