import Foundation
import GPSModel
import GPSTestSupport
import SwiftProtobuf
import Testing

@testable import Queue

/// The offline commands never answer from a run-index row that fails its checksum: they say so
/// and answer from the log; `history verify` names the damage.
@Suite struct IndexDamageCommandTests {
  @Test func aDamagedRowIsAWarningAndTheLogAnswers() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      var options = QueueOptions()
      options.runIndex = RunIndexOptions()
      let queue = try RunQueue(directory: data, options: options)
      var ids: [RunID] = []
      for index in 0..<2 {
        let request = EnqueueRequest(deployment: "flow/d", flow: "flow", parametersJSON: #"{"n":\#(index)}"#)
        ids.append(try await queue.enqueue(request).run.id)
        let claim = try #require(try await queue.claim(scheduler: "s"))
        let end: RunEvent.OneOf_Kind = index == 0 ? .completed(.init()) : .failed(.with { $0.reason = "no" })
        try await queue.report(claim.token, [.started(.init()), end])
      }
      try queue.flushIndex()
      queue.close()
      let intact = try await GPSProcess.run(["history", "verify", "--data-dir", data])
      #expect(intact.status == 0, "\(intact.stderr)")
      #expect(intact.stdout.contains("the run index agrees with the log at its checkpoint"), "\(intact.stdout)")

      // The first run's row takes the second's record: inside valid pages, so SQLite sees nothing.
      let connection = try SQLiteConnection(path: RunStore.path(in: data))
      try connection.execute(
        "UPDATE runs SET data = (SELECT data FROM runs WHERE seq = (SELECT max(seq) FROM runs)) WHERE seq = (SELECT min(seq) FROM runs)"
      )
      let shown = try await GPSProcess.run(["flow-run", "inspect", ids[0].description, "--data-dir", data])
      #expect(shown.status == 0, "\(shown.stderr)")
      #expect(
        shown.stderr.hasPrefix("gps: warning: ") && shown.stderr.contains("the run index is damaged: "),
        "\(shown.stderr)")
      #expect(shown.stderr.contains("answering from the log instead"), "\(shown.stderr)")
      #expect(shown.stdout.contains("Completed") && !shown.stdout.contains("Failed"), "\(shown.stdout)")
      let verify = try await GPSProcess.run(["history", "verify", "--data-dir", data])
      #expect(verify.status == 1)
      #expect(verify.stderr.contains("fails its checksum"), "\(verify.stderr)")
      #expect(verify.stderr.split(separator: "\n").count == 1, "\(verify.stderr)")
    }
  }
}
