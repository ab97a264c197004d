import Foundation
import GPSModel
import GPSTestSupport
import Queue
import Testing

/// `flow-run ls` follows the byte-bounded pages of a listing up to `--limit`, and says what is left.
@Suite struct ListPagesTests {
  @Test func bigRunsAreListedUpToTheLimitAndTheRestIsSaid() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      do {
        let queue = try RunQueue(directory: data)
        defer { queue.close() }
        // ~900 KB of parameters each: a page (3 MiB) holds four of them.
        let big = String(repeating: "x", count: 900_000)
        for index in 0..<10 {
          var request = EnqueueRequest(
            deployment: "big/one", flow: "big", parametersJSON: #"{"blob": "\#(big)\#(index)"}"#)
          request.idempotencyKey = "k\(index)"
          _ = try await queue.enqueue(request)
        }
      }
      let seven = try await GPSProcess.run(["flow-run", "ls", "--data-dir", data, "--limit", "7", "--output", "json"])
      #expect(seven.status == 0, "\(seven.stderr)")
      let listed = try JSONSerialization.jsonObject(with: Data(seven.stdout.utf8)) as? [Any]
      #expect(listed?.count == 7, "\(seven.stdout.prefix(200))")
      #expect(seven.stderr.contains("gps: 7 runs shown; more match: add --cursor "), "\(seven.stderr)")
      // The cursor it printed continues the listing where it stopped.
      let cursor = seven.stderr.split(separator: " ").drop { $0 != "--cursor" }.dropFirst().first.map(String.init)
      let rest = try await GPSProcess.run([
        "flow-run", "ls", "--data-dir", data, "--limit", "7", "--cursor", cursor ?? "", "--output", "json",
      ])
      #expect(rest.status == 0, "\(rest.stderr)")
      #expect((try JSONSerialization.jsonObject(with: Data(rest.stdout.utf8)) as? [Any])?.count == 3)
      #expect(rest.stderr.isEmpty, "\(rest.stderr)")
      let all = try await GPSProcess.run(["flow-run", "ls", "--data-dir", data, "--limit", "50"])
      #expect(all.stdout.split(separator: "\n").count == 11, "\(all.stdout.prefix(300))")
      #expect(all.stderr.isEmpty, "\(all.stderr)")
    }
  }
}
