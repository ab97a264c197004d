import Foundation
import GPSModel
import GPSTestSupport
import Queue
import Testing

/// History at scale in `make test`: 200,000 completed runs written through the queue's commands by
/// a separate process that reports its own resident memory as terminal runs grow; then every run
/// from the index equals a full replay's, and archiving half the log keeps that and verifies.
@Suite struct ScaleTests {
  static let runs = 200_000

  @Test func memoryStaysFlatAt200kRunsAndAnswersEqualAFullReplay() async throws {
    try await withTemporaryDirectory { directory in
      let data = directory.path + "/data"
      let generated = try await GPSProcess.run(
        [
          "generate-history", "--data-dir", data, "--runs", String(Self.runs), "--active", "1000",
          "--every", String(Self.runs / 10), "--segment-size", String(4 << 20),
        ], executable: GPSProcess.bench)
      #expect(generated.status == 0, "\(generated.stderr)")
      // `N runs: resident BYTES, K in memory`, every 20,000 runs.
      let progress = generated.stdout.split(separator: "\n").filter { $0.hasSuffix("in memory") }.map { line in
        let words = line.split(separator: " ")
        return (runs: Int(words[0])!, resident: Int(words[3].dropLast())!, inMemory: Int(words[4])!)
      }
      #expect(progress.count == 10, "\(generated.stdout)")
      print("scale test: resident \(progress.map { "\($0.runs / 1000)k \($0.resident / 1_000_000) MB" })")
      #expect(progress.allSatisfy { $0.inMemory == 0 }, "\(progress)")
      // The index's page cache (16 MiB) fills in the first half; after it, memory does not follow the
      // runs: less than 16 MB over the last 100,000 (in memory they took 700–1,100 bytes each).
      let half = try #require(progress.first { $0.runs == Self.runs / 2 })
      let last = try #require(progress.last)
      #expect(last.resident - half.resident < 16_000_000, "\(progress)")

      var replayed = QueueState()
      try LogReader(directory: data).read { try replayed.apply($0) }
      var options = QueueOptions()
      options.runIndex = RunIndexOptions()
      let queue = try RunQueue(directory: data, options: options)
      #expect(queue.startup.replayedEvents == 0)
      #expect(queue.withState { $0.runs.count } == 1_000)
      let all = try queue.runs(matching: RunQuery(), limit: 1 << 30).runs
      #expect(all.count == Self.runs + 1_000)
      #expect(all == replayed.runs.values.reversed(), "index + memory differ from a full replay")
      #expect(queue.counts == replayed.counts)

      // Archive the first half of the log: the same answers, and the log verifies from its anchor.
      let report = try queue.archive(before: .sequence(queue.durableSequence / 2), archivedBy: "test")
      #expect(report.segments.count >= 5, "\(report)")
      #expect(try queue.runs(matching: RunQuery(), limit: 1 << 30).runs == all)
      queue.close()
      let verified = try LogVerifier(directory: data).verify()
      #expect(verified.isIntact, "\(verified.problem ?? "")")
      #expect(verified.archive?.confirmedBy == report.noteSequence)
      #expect(verified.archive?.records == report.archived?.upperBound)
    }
  }
}
