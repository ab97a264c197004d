import Foundation
import GPSModel
import GPSTestSupport
import Queue
import Testing

/// An enqueue that answers "failed" wrote nothing, and one that succeeded leaves every view working.
@Suite struct EnqueueRefusalTests {
  func enqueuedCount(_ data: String) throws -> Int {
    var count = 0
    try QueueHistory(directory: data).events { _, event in
      if case .enqueued = event.kind { count += 1 }
      return true
    }
    return count
  }

  func parameters(datasetBytes: Int) -> String {
    #"{"data_info": {"object_storage_urls": ["a"], "dataset": ""# + String(repeating: "d", count: datasetBytes)
      + #""}}"#
  }

  @Test func aThreeMegabyteParameterIsRefusedByTheServerAndNothingIsWritten() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      try await createServerFlowQueue(at: data)
      try root.writeFile("big.json", Array(parameters(datasetBytes: 3_000_000).utf8))
      let server = try GPSProcess(["server", "start", "--data-dir", data, "--port", "0", "--no-scheduler"])
      _ = try await server.listeningAddress()
      let refused = try await GPSProcess.run(
        ["deployment", "run", "server-flow/MyPrefectDeployer", "--params", "@big.json", "--data-dir", data],
        directory: root)
      #expect(refused.status == 1)
      #expect(refused.stderr.hasPrefix("gps: error: the run's parameters are 3000"), "\(refused.stderr)")
      #expect(refused.stderr.contains("more than the limit of 1048576 bytes"), "\(refused.stderr)")
      #expect(refused.stderr.split(separator: "\n").count == 1)
      // A small run goes through, and the views keep working.
      let small = try await GPSProcess.run([
        "enqueue", "server-flow/MyPrefectDeployer", "--param", #"data_info={"dataset": "s"}"#, "--data-dir", data,
      ])
      #expect(small.status == 0, "\(small.stderr)")
      let list = try await GPSProcess.run(["flow-run", "ls", "--data-dir", data])
      #expect(list.status == 0, "\(list.stderr)")
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0)
      #expect(try enqueuedCount(data) == 1)
    }
  }

  @Test func aTenMegabyteParameterWithoutAServerIsTooLargeNotALockProblem() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      try await createServerFlowQueue(at: data)
      try root.writeFile("huge.json", Array(parameters(datasetBytes: 10_000_000).utf8))
      let refused = try await GPSProcess.run(
        ["deployment", "run", "server-flow/MyPrefectDeployer", "--params", "@huge.json", "--data-dir", data],
        directory: root)
      #expect(refused.status == 1)
      #expect(refused.stderr.contains("more than the limit of 1048576 bytes"), "\(refused.stderr)")
      #expect(!refused.stderr.contains("in use"))
      #expect(try enqueuedCount(data) == 0)
    }
  }

  @Test func reusingAnIdempotencyKeyWithOtherParametersIsAConflict() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      try await createServerFlowQueue(at: data)
      let first = try await GPSProcess.run([
        "enqueue", "server-flow/MyPrefectDeployer", "--param", #"data_info={"dataset": "one"}"#, "--id-key", "k",
        "--data-dir", data,
      ])
      #expect(first.status == 0, "\(first.stderr)")
      let second = try await GPSProcess.run([
        "enqueue", "server-flow/MyPrefectDeployer", "--param", #"data_info={"dataset": "two"}"#, "--id-key", "k",
        "--data-dir", data,
      ])
      #expect(second.status == 1)
      #expect(second.stderr.contains(#"idempotency key "k" already belongs to run "#), "\(second.stderr)")
      #expect(try enqueuedCount(data) == 1)
    }
  }
}
