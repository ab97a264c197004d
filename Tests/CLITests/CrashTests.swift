import Foundation
import GPSModel
import GPSTestSupport
import Queue
import Testing

/// The complete lines of a killed child's output: the kill may cut the last one short.
func wholeLines(_ output: String) -> [Substring] {
  let whole =
    output.hasSuffix("\n") ? Substring(output) : output[..<(output.lastIndex(of: "\n") ?? output.startIndex)]
  return whole.split(separator: "\n")
}

/// Durability under `kill -9`: a child appends from many tasks and prints each acknowledged record;
/// after every kill, every acknowledged record must be in the log, intact, in order, without gaps.
@Suite struct CrashTests {
  static var kills: Int { Int(ProcessInfo.processInfo.environment["GPS_CRASH_KILLS"] ?? "") ?? 30 }

  @Test func everyAcknowledgedAppendSurvivesKillDashNine() async throws {
    try await withTemporaryDirectory { directory in
      var generator = SystemRandomNumberGenerator()
      var acknowledgedTotal = 0
      for round in 0..<Self.kills {
        let child = try GPSProcess(
          ["append-stress", "--data-dir", directory.path, "--tasks", "16", "--segment-size", "65536"],
          executable: GPSProcess.bench)
        // Kill at a random moment: after a random number of acknowledgements.
        let target = Int.random(in: 1...300, using: &generator)
        await child.waitForOutput { stdout, _ in stdout.utf8.count > target * 20 }
        child.signal(SIGKILL)
        _ = await child.waitForExit()
        let acknowledged = wholeLines(child.stdout).filter { $0.hasPrefix("ack ") }
        #expect(!acknowledged.isEmpty, "round \(round): \(child.stderr)")

        let log = try EventLog(directory: directory.path)  // recovers a torn tail if there is one
        let last = log.lastSequence
        log.close()
        var records: [UInt64: [UInt8]] = [:]
        var previous: UInt64 = 0
        try LogReader(directory: directory.path).read { record in
          #expect(record.sequence == previous + 1, "gap or disorder at \(record.sequence)")
          previous = record.sequence
          records[record.sequence] = record.payload
        }
        #expect(previous == last)
        for line in acknowledged {
          let parts = line.split(separator: " ", maxSplits: 2)
          let sequence = try #require(UInt64(parts[1]))
          #expect(records[sequence] == Array(parts[2].utf8), "round \(round): acknowledged \(sequence) lost or changed")
        }
        acknowledgedTotal += acknowledged.count
      }
      #expect(acknowledgedTotal >= Self.kills)
      #expect(try LogVerifier(directory: directory.path).verify().isIntact)
    }
  }
}

@Suite struct LockTests {
  @Test func aSecondWriterProcessFailsAtOnceNamingTheHolder() async throws {
    try await withTemporaryDirectory { directory in
      let first = try GPSProcess(
        ["append-stress", "--data-dir", directory.path, "--tasks", "1"], executable: GPSProcess.bench)
      await first.waitForOutput { stdout, _ in stdout.contains("ack ") }
      let second = try await GPSProcess.run(
        ["append-stress", "--data-dir", directory.path], executable: GPSProcess.bench)
      #expect(second.status != 0)
      // A long-running holder is not waited for.
      #expect(!second.stderr.contains("waited"), "\(second.stderr)")
      #expect(
        second.stderr.contains(
          "data directory \(directory.path) is in use by server process \(first.processIdentifier)"),
        "\(second.stderr)")
      #expect(second.stderr.filter { $0 == "\n" }.count == 1)
      first.signal(SIGKILL)
      _ = await first.waitForExit()
      // Reading needs no lock: verify works while... and after a writer.
      let verify = try await GPSProcess.run(["log", "verify", "--data-dir", directory.path])
      #expect(verify.status == 0, "\(verify.stderr)")
      #expect(verify.stdout.hasPrefix("log intact: "))
    }
  }
}

/// The queue under `kill -9`: every acknowledged enqueue and completion is there after a restart,
/// the log replays through the state machine, and a restart from the log alone gives the same state.
@Suite struct QueueCrashTests {
  /// With snapshots, with the run index (killed during its commits and retirements too), and with
  /// the index while sealed segments are archived all the time (killed mid-archive too).
  @Test(arguments: ["snapshots", "index", "archive"])
  func everyAcknowledgedRunAndCompletionSurvivesKillDashNine(placement: String) async throws {
    let indexed = placement != "snapshots"
    try await withTemporaryDirectory { directory in
      var generator = SystemRandomNumberGenerator()
      var acknowledged: [RunID: String] = [:]
      var completed = Set<RunID>()
      var midArchive = 0
      for round in 0..<max(10, CrashTests.kills / 3) {
        let child = try GPSProcess(
          ["queue-stress", "--data-dir", directory.path, "--tasks", "8", "--snapshot-every", "200"]
            + (indexed ? ["--index"] : []) + (placement == "archive" ? ["--archive"] : []),
          executable: GPSProcess.bench)
        let target = Int.random(in: 1...400, using: &generator)
        await child.waitForOutput { stdout, _ in stdout.utf8.count > target * 40 }
        child.signal(SIGKILL)
        _ = await child.waitForExit()
        let lines = wholeLines(child.stdout)
        for line in lines {
          let parts = line.split(separator: " ")
          let id = try #require(RunID(String(parts[1])))
          if parts[0] == "enqueued" { acknowledged[id] = String(parts[2]) } else { completed.insert(id) }
        }
        #expect(!lines.isEmpty, "round \(round): \(child.stderr)")

        var options = QueueOptions()
        if indexed { options.runIndex = RunIndexOptions() }
        let queue = try RunQueue(directory: directory.path, options: options)
        defer { queue.close(writingSnapshot: false) }
        for (id, key) in acknowledged {
          let run = try #require(try queue.run(id), "round \(round): acknowledged run \(id) lost")
          #expect(run.idempotencyKey == key)
          #expect(try queue.withState { try $0.run(idempotencyKey: key) }?.id == id)
        }
        for id in completed {
          #expect(try queue.run(id)?.state == .completed, "round \(round): completion of \(id) lost")
        }
        var replayed = QueueState()
        try LogReader(directory: directory.path).read { try replayed.apply($0) }
        if indexed {
          // Every run, wherever it is, as a full replay has it.
          let all = try queue.runs(matching: RunQuery(), limit: 1 << 30).runs
          #expect(all == replayed.runs.values.reversed(), "round \(round): index + memory differ from a full replay")
          #expect(queue.counts == replayed.counts)
        } else {
          #expect(replayed == queue.state, "round \(round): snapshot + tail differs from a full replay")
        }
        if queue.startup.recovery.finishedArchiving { midArchive += 1 }
        if placement == "archive" {
          let fileManager = FileManager.default
          let live = Set(try fileManager.contentsOfDirectory(atPath: directory.path + "/log"))
          let archived = (try? fileManager.contentsOfDirectory(atPath: directory.path + "/archive")) ?? []
          #expect(live.isDisjoint(with: archived), "round \(round): a segment is both archived and live")
          let verified = try LogVerifier(directory: directory.path).verify()
          #expect(verified.isIntact, "round \(round): \(verified.problem ?? "")")
        }
      }
      let verified = try LogVerifier(directory: directory.path).verify()
      print(
        "queue crash test (\(placement)): \(acknowledged.count) runs and \(completed.count) completions acknowledged; \(midArchive) kills fell mid-archive; \(verified.archive?.segmentsPresent ?? 0) segments archived"
      )
      #expect(completed.count > 0)
      #expect(verified.isIntact)
      if placement == "archive" {
        #expect((verified.archive?.segmentsPresent ?? 0) > 0, "nothing was archived")
      }
    }
  }
}
