import Foundation
import GPSModel
import GPSTestSupport
import Queue
import Testing

/// Retention: sealed segments leave the log for `DATA/archive/` (or are deleted) once the run index
/// covers them. Runs stay queryable, events readable while the files are in the archive, the
/// retained log is verified from its anchor, and a segment deleted by hand is still a loss.
@Suite struct ArchiveTests {
  static let day: Duration = .seconds(86_400)

  static func options() -> QueueOptions {
    var options = RunIndexTests.options()
    options.log.segmentSize = 8 * 1024
    return options
  }

  static func segments(_ path: String) throws -> [String] {
    guard FileManager.default.fileExists(atPath: path) else { return [] }
    return try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".seg") }.sorted()
  }

  /// 300 runs, 100 days later 100 more and 5 active: archiving what is older than 90 days takes
  /// only segments whose every event is that old, and every answer stays a full replay's.
  @Test func archivingByAgeKeepsEveryAnswerAndTheHistoryVerifiable() async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      let clock = ManualClock()
      let queue = try RunQueue(directory: path, options: Self.options(), clock: clock)
      try await RunIndexTests.complete(300, in: queue)
      let old = clock.now()
      clock.advance(by: Self.day * 100)
      try await RunIndexTests.complete(100, active: 5, in: queue, from: 300)
      let before = try RunIndexTests.replayed(path)
      let cutoff = clock.now() + Self.day * -90

      // Not yet indexed: nothing moves.
      let early = try queue.archive(before: .time(cutoff), archivedBy: "tester", dryRun: true)
      try queue.flushIndex()
      let dry = try queue.archive(before: .time(cutoff), archivedBy: "tester", dryRun: true)
      #expect(dry.segments.count >= early.segments.count)
      #expect(try Self.segments(path + "/archive").isEmpty, "a dry run moves nothing")

      let report = try queue.archive(before: .time(cutoff), archivedBy: "tester")
      let archived = try #require(report.archived)
      #expect(report.segments == dry.segments)
      #expect(report.segments.count >= 3, "\(report)")
      #expect(archived.lowerBound == 1)
      #expect(report.logStart == archived.upperBound + 1)
      #expect(queue.logStart == report.logStart)
      #expect(report.stoppedBecause?.contains("not all before") == true, "\(report)")
      #expect(try Self.segments(path + "/archive") == report.segments)
      let live = try Self.segments(path + "/log")
      #expect(Set(live).isDisjoint(with: report.segments), "a segment is archived or live, never both")
      // Every archived event is older than the cutoff; the first retained one is not.
      try LogReader(directory: path).read { record in
        let event = try RunEvent(record)
        if record.sequence <= archived.upperBound { #expect(event.time < cutoff) }
      }
      #expect(try RunEvent.first(in: path, at: report.logStart).time >= old)

      // Answers: the same runs, counts and listings; old runs are marked archived.
      try RunIndexTests.expectListing(queue, equals: before, "archived")
      #expect(queue.counts == before.counts)
      let oldest = try #require(before.runs.values.first)
      #expect(try queue.run(oldest.id) == oldest)
      #expect(oldest.firstSequence < queue.logStart)
      // The history reads on into the archive, from sequence 1.
      #expect(try RunIndexTests.replayed(path).runs == before.runs)

      // Verified from the anchor, which the log's own note confirms; the archive is verified too.
      let verified = try LogVerifier(directory: path).verify()
      #expect(verified.isIntact, "\(verified.problem ?? "")")
      #expect(verified.anchor?.firstSequence == report.logStart)
      #expect(verified.archive?.confirmedBy == report.noteSequence)
      #expect(verified.archive?.records == archived.upperBound)
      #expect(verified.archive?.absent == [])
      let note = try RunEvent.first(in: path, at: try #require(report.noteSequence))
      guard case .logSegmentsArchived(let recorded) = note.kind else {
        Issue.record("event \(report.noteSequence!) is \(note.typeName)")
        return
      }
      #expect(recorded.lastArchived == archived.upperBound && recorded.segments == report.segments)
      queue.close()

      // Reopened: nothing replayed, the same answers, the same start.
      let reopened = try RunQueue(directory: path, options: Self.options(), clock: clock)
      #expect(reopened.startup.replayedEvents == 0)
      #expect(reopened.logStart == report.logStart)
      try RunIndexTests.expectListing(reopened, equals: before, "reopened")
      reopened.close()

      // The index lost: rebuilt from the archive and the log, with the same answers.
      try FileManager.default.removeItem(atPath: path + "/index")
      let rebuilt = try RunQueue(directory: path, options: Self.options(), clock: clock)
      try RunIndexTests.expectListing(rebuilt, equals: before, "rebuilt through the archive")
      rebuilt.close()
    }
  }

  /// A run not finished keeps its events in the retained log: archiving stops at the segment
  /// holding its first event, says why, and takes that segment once the run has finished.
  @Test func aRunNotFinishedKeepsItsSegmentsInTheLog() async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      let clock = ManualClock()
      let queue = try RunQueue(directory: path, options: Self.options(), clock: clock)
      try await RunIndexTests.complete(150, in: queue)
      var later = EnqueueRequest(deployment: "flow/a", flow: "flow", parametersJSON: "{}")
      later.scheduledStart = clock.now() + Self.day * 30
      let pinned = try await queue.enqueue(later).run
      try await RunIndexTests.complete(150, in: queue, from: 150)
      try queue.flushIndex()

      let held = try queue.archive(before: .sequence(.max), archivedBy: "tester")
      let archived = try #require(held.archived, "the segments before the run's are archived")
      #expect(archived.upperBound < pinned.firstSequence)
      #expect(held.logStart <= pinned.firstSequence)
      #expect(held.stoppedBecause?.contains("run \(pinned.id), still Scheduled") == true, "\(held)")

      _ = try await queue.cancel(pinned.id, by: "tester")
      try await RunIndexTests.complete(50, in: queue, from: 300)
      try queue.flushIndex()
      let freed = try queue.archive(before: .sequence(.max), archivedBy: "tester")
      #expect(try #require(freed.archived).upperBound >= pinned.firstSequence, "\(freed)")
      #expect(freed.stoppedBecause?.contains("still") != true, "\(freed)")
      #expect(try LogVerifier(directory: path).verify().isIntact)
      queue.close()
    }
  }

  /// The archive moved elsewhere: runs still answer from the index, the retained log still
  /// verifies, and putting the files back makes the events readable and verifiable again. Without
  /// archive and index, the queue refuses to rebuild a shorter history.
  @Test func theArchiveCanLeaveAndComeBack() async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      let queue = try RunQueue(directory: path, options: Self.options())
      try await RunIndexTests.complete(300, active: 3, in: queue)
      try queue.flushIndex()
      let before = try RunIndexTests.replayed(path)
      let report = try queue.archive(before: .sequence(1_000), archivedBy: "tester")
      let archived = try #require(report.archived)
      #expect(archived.upperBound < 1_000)
      queue.close()

      let elsewhere = directory.path + "-cold"
      try FileManager.default.moveItem(atPath: path + "/archive", toPath: elsewhere)
      defer { try? FileManager.default.removeItem(atPath: elsewhere) }
      let verified = try LogVerifier(directory: path).verify()
      #expect(verified.isIntact, "\(verified.problem ?? "")")
      #expect(verified.archive?.absent == [archived])
      let reopened = try RunQueue(directory: path, options: Self.options())
      try RunIndexTests.expectListing(reopened, equals: before, "archive elsewhere")
      reopened.close()
      // The events of the archived range are not here: reading from 1 starts where the log does.
      var first: UInt64?
      try LogReader(directory: path).read { record in first = first ?? record.sequence }
      #expect(first == report.logStart)

      // No index and no archive: refused, with what to do.
      try FileManager.default.moveItem(atPath: path + "/index", toPath: path + "/index-aside")
      #expect {
        _ = try RunQueue(directory: path, options: Self.options())
      } throws: { error in
        (error as? QueueError)?.code == .dataLost
          && (error as? QueueError)?.message.contains("put the archived segments back in DATA/archive/") == true
      }
      try FileManager.default.removeItem(atPath: path + "/index")

      // Put back: readable and verified again, and the index rebuilds from it.
      try FileManager.default.moveItem(atPath: elsewhere, toPath: path + "/archive")
      #expect(try RunIndexTests.replayed(path).runs == before.runs)
      let again = try LogVerifier(directory: path).verify()
      #expect(again.isIntact && again.archive?.records == archived.upperBound, "\(again.problem ?? "")")
      let rebuilt = try RunQueue(directory: path, options: Self.options())
      try RunIndexTests.expectListing(rebuilt, equals: before, "put back")
      rebuilt.close()
    }
  }

  /// Deleting instead of moving; then a retained segment deleted by hand is a loss (never taken
  /// for archiving), and an edited anchor fails verification.
  @Test func deletionAndTamperingAreTold() async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      let queue = try RunQueue(directory: path, options: Self.options())
      try await RunIndexTests.complete(300, in: queue)
      try queue.flushIndex()
      let before = try RunIndexTests.replayed(path)
      let report = try queue.archive(before: .sequence(500), delete: true, archivedBy: "tester")
      #expect(report.deleted && !report.segments.isEmpty)
      #expect(try Self.segments(path + "/archive").isEmpty)
      let second = try queue.archive(before: .sequence(1_000), archivedBy: "tester")
      #expect(second.archived?.lowerBound == report.logStart)
      #expect(try Self.segments(path + "/archive") == second.segments)
      try RunIndexTests.expectListing(queue, equals: before, "after deleting")
      queue.close()
      // Read from its files (the CLI without a server): from the index, since no replay can
      // start where the deleted segments were.
      let reader = try QueueReader(directory: path)
      #expect(reader.replayedWhole == nil)
      #expect(reader.logStart == second.logStart)
      try RunIndexTests.expectListing(reader, equals: before, "read from files after deleting")
      let verified = try LogVerifier(directory: path).verify()
      #expect(verified.isIntact, "\(verified.problem ?? "")")
      #expect(verified.archive?.absent == [report.archived!])
      #expect(verified.archive?.confirmedBy == second.noteSequence)

      // An edited anchor: the log's note no longer vouches for it.
      let anchorPath = path + "/log/ANCHOR"
      let original = try Data(contentsOf: URL(fileURLWithPath: anchorPath))
      var edited = try #require(try JSONSerialization.jsonObject(with: original) as? [String: Any])
      edited["previous_hash"] = Data(repeating: 7, count: 32).base64EncodedString()
      try JSONSerialization.data(withJSONObject: edited).write(to: URL(fileURLWithPath: anchorPath))
      #expect(try LogVerifier(directory: path).verify().isIntact == false)
      try original.write(to: URL(fileURLWithPath: anchorPath))

      // The first retained segment deleted by hand: a loss, not an archive.
      let live = try Self.segments(path + "/log")
      try FileManager.default.removeItem(atPath: path + "/log/" + live[0])
      #expect {
        _ = try RunQueue(directory: path, options: Self.options())
      } throws: { error in
        (error as? QueueError)?.code == .dataLost
      }
      #expect(try LogVerifier(directory: path).verify().missing?.lowerBound == second.logStart)
    }
  }

  /// An index older than a deleting archive (as after a power cut that lost its last commits,
  /// which `archive` prevents by syncing first): refused as a loss, and the index is left in place,
  /// since nothing could rebuild it.
  @Test func anIndexBehindADeletedArchiveIsKeptAndRefused() async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      let queue = try RunQueue(directory: path, options: Self.options())
      try await RunIndexTests.complete(100, in: queue)
      queue.close()
      try FileManager.default.copyItem(atPath: path + "/index", toPath: path + "/index-old")
      let again = try RunQueue(directory: path, options: Self.options())
      try await RunIndexTests.complete(200, in: again, from: 100)
      try again.flushIndex()
      let report = try again.archive(before: .sequence(.max), delete: true, archivedBy: "tester")
      #expect(!report.segments.isEmpty)
      again.close()
      try FileManager.default.removeItem(atPath: path + "/index")
      try FileManager.default.moveItem(atPath: path + "/index-old", toPath: path + "/index")
      #expect {
        _ = try RunQueue(directory: path, options: Self.options())
      } throws: { error in
        (error as? QueueError)?.code == .dataLost
          && (error as? QueueError)?.message.contains("cannot be rebuilt") == true
      }
      #expect(FileManager.default.fileExists(atPath: path + "/index/runs.db"))
    }
  }

  /// A crash after the anchor was written and before every segment moved: opening finishes it.
  @Test func anInterruptedArchiveIsFinishedOnOpen() async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      let queue = try RunQueue(directory: path, options: Self.options())
      try await RunIndexTests.complete(200, in: queue)
      try queue.flushIndex()
      let before = try RunIndexTests.replayed(path)
      let report = try queue.archive(before: .sequence(600), archivedBy: "tester")
      queue.close()
      // Put all but the first archived segment back in log/, as if the crash came mid-way.
      for name in report.segments.dropFirst() {
        try FileManager.default.moveItem(atPath: path + "/archive/" + name, toPath: path + "/log/" + name)
      }
      let reopened = try RunQueue(directory: path, options: Self.options())
      #expect(reopened.startup.recovery.finishedArchiving)
      #expect(try Self.segments(path + "/archive") == report.segments)
      #expect(Set(try Self.segments(path + "/log")).isDisjoint(with: report.segments))
      try RunIndexTests.expectListing(reopened, equals: before, "finished")
      reopened.close()
      #expect(try LogVerifier(directory: path).verify().isIntact)

      // A segment in both folders is refused, not guessed at.
      let name = report.segments[0]
      try FileManager.default.copyItem(atPath: path + "/archive/" + name, toPath: path + "/log/" + name)
      #expect {
        _ = try RunQueue(directory: path, options: Self.options())
      } throws: { error in
        (error as? QueueError)?.message.contains("is both in log/ and in archive/") == true
      }
    }
  }
}

extension ArchiveTests {
  /// A crash at every step of an archive (before the anchor, then after each moved segment):
  /// reopening gives the same answers, a log that verifies, and no segment in both folders.
  @Test func aCrashAtAnyStepOfArchivingLosesNothing() async throws {
    for step in -1...4 {
      try await withTemporaryDirectory { directory in
        let path = directory.path
        let faulty = FaultyFileSystem()
        let queue = try RunQueue(directory: path, options: Self.options(), fileSystem: faulty)
        try await RunIndexTests.complete(200, in: queue)
        try queue.flushIndex()
        let before = try RunIndexTests.replayed(path)
        if step < 0 { faulty.failWrites(errno: EIO) } else { faulty.failRenames(after: step) }
        #expect(throws: QueueError.self, "step \(step)") {
          try queue.archive(before: .sequence(800), archivedBy: "tester")
        }
        faulty.heal()
        queue.close()
        let reopened = try RunQueue(directory: path, options: Self.options())
        #expect(reopened.startup.recovery.finishedArchiving == (step >= 0), "step \(step)")
        let live = try Self.segments(path + "/log")
        let archived = try Self.segments(path + "/archive")
        #expect(Set(live).isDisjoint(with: archived), "step \(step)")
        #expect(archived.isEmpty == (step < 0), "step \(step)")
        try RunIndexTests.expectListing(reopened, equals: before, "step \(step)")
        #expect(try RunIndexTests.replayed(path).runs == before.runs)
        reopened.close()
        let verified = try LogVerifier(directory: path).verify()
        #expect(verified.isIntact, "step \(step): \(verified.problem ?? "")")
      }
    }
  }
}

extension ArchiveTests {
  /// Stopped after its note was durable and before its anchor (a kill, a full disk): the next
  /// open finishes it, and another archive writes no second note for the same segments (before:
  /// the segments stayed in log/ with no anchor, and a second archive noted them again).
  @Test func anArchiveStoppedAfterItsNoteIsFinishedByTheNextOpen() async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      let faulty = FaultyFileSystem()
      let queue = try RunQueue(directory: path, options: Self.options(), fileSystem: faulty)
      try await RunIndexTests.complete(200, in: queue)
      try queue.flushIndex()
      let before = try RunIndexTests.replayed(path)
      faulty.failAtomicWrites(endingIn: "/ANCHOR")
      let error = #expect(throws: QueueError.self) { try queue.archive(before: .sequence(800), archivedBy: "tester") }
      #expect(error?.message.contains("the next open or archive finishes it") == true, "\(error?.message ?? "")")
      faulty.heal()
      queue.close()
      #expect(try Self.segments(path + "/archive").isEmpty)
      let reopened = try RunQueue(directory: path, options: Self.options())
      let anchor = try #require(try LogAnchor.read(logDirectory: path + "/log", fileSystem: PosixFileSystem()))
      #expect(anchor.firstSequence > 1)
      #expect(reopened.logStart == anchor.firstSequence)
      let archived = try Self.segments(path + "/archive")
      #expect(!archived.isEmpty)
      #expect(Set(try Self.segments(path + "/log")).isDisjoint(with: archived))
      #expect(!FileManager.default.fileExists(atPath: path + "/log/ARCHIVING"))
      // Nothing more to archive before 800: no second note.
      _ = try reopened.archive(before: .sequence(800), archivedBy: "tester")
      try RunIndexTests.expectListing(reopened, equals: before, "after the finish")
      reopened.close()
      var notes = 0
      try QueueHistory(directory: path).events { _, event in
        if case .logSegmentsArchived = event.kind { notes += 1 }
        return true
      }
      #expect(notes == 1)
      let verified = try LogVerifier(directory: path).verify()
      #expect(verified.isIntact, "\(verified.problem ?? "")")
    }
  }
}

extension RunEvent {
  /// The event at `sequence` of the log (or archive) in `path`.
  static func first(in path: String, at sequence: UInt64) throws -> RunEvent {
    var found: RunEvent?
    var cursor = LogCursor(from: sequence)
    try LogReader(directory: path).read(&cursor, window: 4096) { record in
      found = try RunEvent(record)
      return false
    }
    return try #require(found)
  }
}
