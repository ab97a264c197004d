import Flows
import Foundation
import GPSModel
import GPSTestSupport
import Queue
import ReferenceFlow
import SwiftProtobuf
import Testing

/// What the `gps` commands say about damaged storage and a busy lock: one line, the sequences or
/// the place, and the way out.
@Suite struct StorageCommandTests {
  /// A queue of `runs` runs over 1 KiB segments, closed with a snapshot of the whole log.
  /// `runs` runs left Scheduled, or cancelled once enqueued (`finished`: archiving keeps the
  /// segments of runs not finished).
  func makeQueue(_ path: String, runs: Int = 30, finished: Bool = false) async throws {
    var options = QueueOptions()
    options.log.segmentSize = 1024
    let queue = try RunQueue(directory: path, options: options)
    _ = try await queue.register(DeploymentRegistry.standard.definitions, worker: "test", by: "test")
    for index in 0..<runs {
      let run = try await queue.enqueue(
        EnqueueRequest(
          deployment: "server-flow/MyPrefectDeployer", flow: "server-flow", parametersJSON: #"{"n":\#(index)}"#)
      ).run
      if finished { try await queue.cancel(run.id, by: "test") }
    }
    queue.close()
  }

  func segments(_ path: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: path + "/log").filter { $0.hasSuffix(".seg") }.sorted()
  }

  func oneErrorLine(_ result: (status: Int32, stdout: String, stderr: String), containing parts: [String]) {
    #expect(result.status != 0)
    #expect(result.stderr.hasPrefix("gps: error: "), "\(result.stderr)")
    #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
    for part in parts { #expect(result.stderr.contains(part), "\(result.stderr)") }
  }

  @Test func aDeletedLastSegmentIsRefusedUntilTheLossIsAcceptedAndRecorded() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      try await makeQueue(data)
      let last = try segments(data).last!
      try FileManager.default.removeItem(atPath: data + "/log/" + last)
      let first = UInt64(last.prefix(20))!

      let server = try await GPSProcess.run(["server", "start", "--data-dir", data, "--port", "0", "--no-scheduler"])
      oneErrorLine(server, containing: ["sequences \(first)–", "are missing", "gps log accept-loss"])
      oneErrorLine(
        try await GPSProcess.run(["log", "verify", "--data-dir", data]), containing: ["sequences \(first)–"])
      oneErrorLine(try await GPSProcess.run(["flow-run", "ls", "--data-dir", data]), containing: ["are missing"])

      let accepted = try await GPSProcess.run(["log", "accept-loss", "--data-dir", data])
      #expect(accepted.status == 0, "\(accepted.stderr)")
      #expect(accepted.stdout.contains("accepted the loss of sequences \(first)–"), "\(accepted.stdout)")
      let replay = try await GPSProcess.run(["history", "replay", "--data-dir", data])
      #expect(replay.stdout.contains("LogLossAccepted"), "\(replay.stdout)")
      let verify = try await GPSProcess.run(["history", "verify", "--data-dir", data])
      #expect(verify.status == 0, "\(verify.stderr)")
      let list = try await GPSProcess.run(["flow-run", "ls", "--data-dir", data, "--limit", "100"])
      #expect(list.status == 0, "\(list.stderr)")
    }
  }

  @Test func aFlippedByteInASealedSegmentIsWarnedAboutByOfflineReads() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      try await makeQueue(data)
      let sealed = try segments(data)[1]
      let url = URL(fileURLWithPath: data + "/log/" + sealed)
      var bytes = try Data(contentsOf: url)
      bytes[LogFormat.segmentHeaderSize + 70] ^= 0x01
      try bytes.writeInPlace(to: url)
      // (A limit above the runs there: the only line on stderr is then the warning.)
      for arguments in [["flow-run", "ls"], ["flow-run", "ls", "--output", "json"]] {
        let result = try await GPSProcess.run(arguments + ["--data-dir", data, "--limit", "1000"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(
          result.stderr.hasPrefix("gps: warning: the log in \(data) is damaged: segment \(sealed)"), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1)
      }
    }
  }

  @Test func garbageAtTheEndIsReportedByAnOfflineCommandAndShownInTheHistory() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      try await makeQueue(data, runs: 2)
      let last = try segments(data).last!
      let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: data + "/log/" + last))
      try handle.seekToEnd()
      try handle.write(contentsOf: Data(repeating: 0x5A, count: 5000))
      try handle.close()
      let enqueued = try await GPSProcess.run([
        "enqueue", "server-flow/MyPrefectDeployer", "--param", #"data_info={"dataset": "x"}"#, "--data-dir", data,
      ])
      #expect(enqueued.status == 0, "\(enqueued.stderr)")
      #expect(enqueued.stderr.hasPrefix("gps: warning: cut bytes "), "\(enqueued.stderr)")
      #expect(enqueued.stderr.contains("(5000 bytes) at the end of segment \(last)"), "\(enqueued.stderr)")
      let replay = try await GPSProcess.run(["history", "replay", "--data-dir", data])
      #expect(replay.stdout.contains("LogTailTruncated"), "\(replay.stdout)")
      #expect(replay.stdout.contains("(5000 bytes)"), "\(replay.stdout)")
    }
  }

  @Test func parallelOfflineEnqueuesWaitForTheLockInsteadOfFailing() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      try await createServerFlowQueue(at: data)
      let results = try await withThrowingTaskGroup(of: (status: Int32, stdout: String, stderr: String).self) { group in
        for index in 0..<16 {
          group.addTask {
            try await GPSProcess.run([
              "enqueue", "server-flow/MyPrefectDeployer", "--param", #"data_info={"dataset": "p\#(index)"}"#,
              "--data-dir", data,
            ])
          }
        }
        return try await group.reduce(into: []) { $0.append($1) }
      }
      for result in results { #expect(result.status == 0, "\(result.stderr)") }
      var enqueued = 0
      try QueueHistory(directory: data).events { _, event in
        if case .enqueued = event.kind { enqueued += 1 }
        return true
      }
      #expect(enqueued == 16)
    }
  }

  @Test func aMistypedDataDirectoryIsRefusedNotCreated() async throws {
    try await withTemporaryDirectory { root in
      let result = try await GPSProcess.run([
        "enqueue", "server-flow/MyPrefectDeployer", "--param", #"data_info={"dataset": "x"}"#, "--data-dir",
        root.path + "/dta",
      ])
      oneErrorLine(result, containing: ["no queue in \(root.path)/dta"])
      #expect(!FileManager.default.fileExists(atPath: root.path + "/dta"))
    }
  }

  /// An event this version refuses (an older one wrote it) stops every open with one line naming
  /// it and what to do; `gps log skip-event` records the decision, and `history verify` names it.
  @Test func aRefusedEventIsNamedAndSkippedOnlyByARecordedDecision() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      let queue = try RunQueue(directory: data)
      let run = try await queue.enqueue(EnqueueRequest(deployment: "flow/d", flow: "flow")).run.id
      queue.close()
      let log = try EventLog(directory: data)
      _ = try await log.append([
        try RunEvent.with {
          $0.timeMicros = SystemClock().now().micros
          $0.runID = Data(run.bytes)
          $0.runEvent = 2
          $0.kind = .started(.init())
        }.serializedBytes()
      ])
      log.close()
      let advice = "`gps log skip-event 2 --reason …` opens the log without it"
      oneErrorLine(
        try await GPSProcess.run(["server", "start", "--data-dir", data, "--port", "0", "--no-web"]),
        containing: ["event 2: run \(run)", advice])
      oneErrorLine(
        try await GPSProcess.run(["history", "verify", "--data-dir", data]),
        containing: ["history verify failed: event 2", advice])
      oneErrorLine(
        try await GPSProcess.run(["log", "skip-event", "1", "--reason", "x", "--data-dir", data]),
        containing: ["event 1 (RunEnqueued) applies"])
      let skip = try await GPSProcess.run(["log", "skip-event", "2", "--reason", "written by 0.9", "--data-dir", data])
      #expect(skip.status == 0, "\(skip.stderr)")
      #expect(
        skip.stdout.contains("skipped event 2 (RunStarted of run \(run)): the reducer refuses it"), "\(skip.stdout)")
      #expect(skip.stdout.contains("recorded as event 3"), "\(skip.stdout)")
      let verify = try await GPSProcess.run(["history", "verify", "--data-dir", data])
      #expect(verify.status == 0, "\(verify.stderr)")
      #expect(verify.stdout.contains("passed over by recorded decision"), "\(verify.stdout)")
      #expect(verify.stdout.contains("event 2 (RunStarted of run \(run)) by "), "\(verify.stdout)")
      #expect(verify.stdout.contains(": written by 0.9"), "\(verify.stdout)")
      let shown = try await GPSProcess.run(["flow-run", "inspect", run.description, "--data-dir", data])
      #expect(shown.status == 0, "\(shown.stderr)")
      // The note is in the log; a file pointing at another event is found out.
      var file = try String(contentsOfFile: data + "/log/SKIPPED", encoding: .utf8)
      file = file.replacingOccurrences(of: "\"note_sequence\" : 3", with: "\"note_sequence\" : 1")
      try file.write(toFile: data + "/log/SKIPPED", atomically: true, encoding: .utf8)
      oneErrorLine(
        try await GPSProcess.run(["history", "verify", "--data-dir", data]),
        containing: ["names event 1 as its note, but the log holds no LogEventSkipped note for it there"])
    }
  }
}

/// `flow-run inspect` of a run that was re-queued after its scheduler vanished.
@Suite struct InspectLostAttemptTests {
  @Test func theLostAttemptIsShownAsLostWithWhy() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      let clock = ManualClock()
      var options = QueueOptions()
      options.leaseDuration = .seconds(5)
      let queue = try RunQueue(directory: data, options: options, clock: clock)
      var request = EnqueueRequest(
        deployment: "server-flow/MyPrefectDeployer", flow: "server-flow", parametersJSON: #"{"data_info":{}}"#)
      request.crashPolicy = CrashPolicy(maxRequeues: 1, requeueDelay: .zero)
      let id = try await queue.enqueue(request).run.id
      let started: [RunEvent.OneOf_Kind] = [
        .started(.init()),
        .attemptStarted(
          .with {
            $0.step = "prepare"
            $0.attempt = 1
          }),
      ]
      let first = try #require(try await queue.claim(scheduler: "gone"))
      try await queue.report(first.token, started)
      clock.advance(by: .seconds(6))
      _ = try await queue.tick()
      let second = try #require(try await queue.claim(scheduler: "next"))
      try await queue.report(second.token, started)
      try await queue.report(
        second.token,
        [
          .attemptSucceeded(
            .with {
              $0.step = "prepare"
              $0.attempt = 1
            }), .completed(.init()),
        ])
      queue.close()
      let inspect = try await GPSProcess.run(["flow-run", "inspect", id.description, "--data-dir", data])
      #expect(inspect.status == 0, "\(inspect.stderr)")
      #expect(inspect.stdout.contains("lost: scheduler gone stopped heartbeating"), "\(inspect.stdout)")
      #expect(!inspect.stdout.contains("running"), "\(inspect.stdout)")
      #expect(inspect.stdout.contains("succeeded"))
    }
  }
}

/// Retention from the command line: `gps log archive` on the log, through a running server, and
/// the server's own `--retain`; the server's check of sealed segments after it is ready.
@Suite struct ArchiveCommandTests {
  let storage = StorageCommandTests()

  @Test func logArchiveMovesOldSegmentsAndVerifyProvesTheRest() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      try await storage.makeQueue(data, runs: 60, finished: true)
      let listed = try await GPSProcess.run([
        "flow-run", "ls", "--data-dir", data, "--limit", "1000", "--output", "json",
      ])
      let runs = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])
      let oldest = try #require(runs.last?["id"] as? String)

      let bad = try await GPSProcess.run(["log", "archive", "--data-dir", data, "--before", "last tuesday"])
      storage.oneErrorLine(bad, containing: ["--before 'last tuesday' is neither a duration"])

      let dry = try await GPSProcess.run(["log", "archive", "--data-dir", data, "--before", "40", "--dry-run"])
      #expect(dry.status == 0, "\(dry.stderr)")
      #expect(dry.stdout.hasPrefix("would archive "), "\(dry.stdout)")
      #expect(!FileManager.default.fileExists(atPath: data + "/archive"))

      let archived = try await GPSProcess.run(["log", "archive", "--data-dir", data, "--before", "40"])
      #expect(archived.status == 0, "\(archived.stderr)")
      #expect(archived.stdout.hasPrefix("archived "), "\(archived.stdout)")
      #expect(archived.stdout.contains("to \(data)/archive/"), "\(archived.stdout)")
      let moved = try FileManager.default.contentsOfDirectory(atPath: data + "/archive").filter { $0.hasSuffix(".seg") }
      #expect(!moved.isEmpty)
      #expect(Set(try storage.segments(data)).isDisjoint(with: moved))

      let verify = try await GPSProcess.run(["log", "verify", "--data-dir", data])
      #expect(verify.status == 0, "\(verify.stderr)")
      #expect(verify.stdout.contains("from the anchor in log/ANCHOR (sequences 1–"), "\(verify.stdout)")
      #expect(verify.stdout.contains("of the log confirms"), "\(verify.stdout)")
      #expect(verify.stdout.contains("archived segments in archive/ verified"), "\(verify.stdout)")
      let replay = try await GPSProcess.run(["history", "replay", "--data-dir", data])
      #expect(replay.stdout.contains("LogSegmentsArchived"), "\(replay.stdout.suffix(500))")
      // Every transition is proved too, through the archive (this failed after every archive).
      let history = try await GPSProcess.run(["history", "verify", "--data-dir", data])
      #expect(history.status == 0, "\(history.stderr)")
      #expect(
        history.stdout.contains("transitions replayed from event 1, through the archived segments"), "\(history.stdout)"
      )

      // The oldest run is still there, marked archived; its events read from the archive.
      let inspect = try await GPSProcess.run([
        "flow-run", "inspect", String(oldest), "--data-dir", data, "--output", "json",
      ])
      #expect(inspect.status == 0, "\(inspect.stderr)")
      #expect(inspect.stdout.contains("\"archived\": true"), "\(inspect.stdout.prefix(800))")
      #expect(inspect.stdout.contains("RunEnqueued"), "\(inspect.stdout.prefix(800))")

      // With the archive gone, the retained log is proved from a state the log vouches for.
      try FileManager.default.removeItem(atPath: data + "/archive")
      let retained = try await GPSProcess.run(["history", "verify", "--data-dir", data])
      #expect(retained.status == 0, "\(retained.stderr)")
      #expect(retained.stdout.contains("transitions replayed from the"), "\(retained.stdout)")
    }
  }

  @Test func theServerArchivesByRetentionAndThroughItsControlAPI() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      try await storage.makeQueue(data, runs: 60, finished: true)
      // Every sealed segment is older than 0s: the server archives them as soon as it is ready.
      let server = try GPSProcess([
        "server", "start", "--data-dir", data, "--port", "0", "--no-web", "--no-scheduler", "--retain", "0s",
      ])
      let ready = await server.waitForOutput { _, stderr in stderr.contains("log segments older than the retention") }
      #expect(ready, "\(server.stderr)")
      #expect(await server.waitForOutput { _, stderr in stderr.contains("checked the log's sealed segments") })
      let moved = try FileManager.default.contentsOfDirectory(atPath: data + "/archive").filter { $0.hasSuffix(".seg") }
      #expect(!moved.isEmpty)
      // Through the server: nothing more is sealed and old enough; the answer says why.
      let again = try await GPSProcess.run(["log", "archive", "--data-dir", data, "--before", "0s"])
      #expect(again.status == 0, "\(again.stderr)")
      #expect(again.stdout.hasPrefix("nothing to archive ("), "\(again.stdout)")
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0)
      let verify = try await GPSProcess.run(["log", "verify", "--data-dir", data])
      #expect(verify.status == 0, "\(verify.stderr)")
      // Without the server, the CLI reads the run index and the log after it: every run, the
      // archived ones marked, even with the archived segments deleted.
      let deleted = try await GPSProcess.run(["log", "archive", "--data-dir", data, "--before", "0s", "--delete"])
      #expect(deleted.status == 0, "\(deleted.stderr)")
      try FileManager.default.removeItem(atPath: data + "/archive")
      let listed = try await GPSProcess.run([
        "flow-run", "ls", "--data-dir", data, "--limit", "1000", "--output", "json",
      ])
      #expect(listed.status == 0, "\(listed.stderr)")
      let runs = try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]]
      #expect(runs?.count == 60)
      #expect(runs?.contains { $0["archived"] as? Bool == true } == true)
    }
  }

  @Test func aDamagedSealedSegmentIsReportedAfterTheServerIsReady() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      try await storage.makeQueue(data, runs: 60)
      // The run index at the log's end, as a server leaves it: the next start reads no old segment.
      var options = QueueOptions()
      options.runIndex = RunIndexOptions()
      try RunQueue(directory: data, options: options).close()
      let sealed = try storage.segments(data)[1]
      let url = URL(fileURLWithPath: data + "/log/" + sealed)
      var bytes = try Data(contentsOf: url)
      bytes[LogFormat.segmentHeaderSize + 70] ^= 0x01
      try bytes.writeInPlace(to: url)
      let server = try GPSProcess(["server", "start", "--data-dir", data, "--port", "0", "--no-web", "--no-scheduler"])
      let reported = await server.waitForOutput { _, stderr in stderr.contains("the log is damaged") }
      #expect(reported, "\(server.stderr)")
      #expect(server.stdout.contains("queue ready"), "\(server.stdout)")
      #expect(server.stderr.contains("segment \(sealed)"), "\(server.stderr)")
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0)
    }
  }
}
