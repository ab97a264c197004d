import Foundation
import GPSModel
import GPSTestSupport
import Queue
import Testing

@Suite struct DeploymentCommandTests {
  static let snippet = #"data_info={"object_storage_urls": ["a"], "dataset": "b"}"#

  func events(_ directory: URL) throws -> [RunEvent] {
    var events: [RunEvent] = []
    guard FileManager.default.fileExists(atPath: directory.path + "/data/log") else { return [] }
    // The runs' events: the registration of server-flow that the queue starts with is not one.
    try QueueHistory(directory: directory.path + "/data").events { _, event in
      if !event.isQueueRecord { events.append(event) }
      return true
    }
    return events
  }

  @Test func listsAndInspectsDeploymentsWithTheirParameterSchema() async throws {
    try await withTemporaryDirectory { directory in
      let data = directory.path + "/data"
      try await createServerFlowQueue(at: data)
      // Without a server, from the log: registered, but no worker can be known to serve it.
      let list = try await GPSProcess.run(["deployment", "ls", "--data-dir", data])
      #expect(list.status == 0)
      let row = list.stdout.split(separator: "\n").first { $0.hasPrefix("server-flow/MyPrefectDeployer") }
      #expect(
        row?.split(separator: " ", omittingEmptySubsequences: true).prefix(4) == [
          "server-flow/MyPrefectDeployer", "1", "NOT_READY", "-",
        ], "\(list.stdout)")
      let inspect = try await GPSProcess.run([
        "deployment", "inspect", "server-flow/MyPrefectDeployer", "--data-dir", data,
      ])
      #expect(inspect.status == 0)
      #expect(inspect.stdout.contains(#""$schema": "https://json-schema.org/draft/2020-12/schema""#))
      #expect(inspect.stdout.contains(#""object_storage_urls": {"#))
      #expect(inspect.stdout.contains(#""type": "gps.v1.DataInfo""#))
      let json = try await GPSProcess.run(["deployment", "ls", "--output", "json", "--data-dir", data])
      #expect(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) is [Any])
    }
  }

  @Test func runEnqueuesTheSnippetsRunWithTypedParameters() async throws {
    try await withTemporaryDirectory { directory in
      try await createServerFlowQueue(at: directory.path + "/data")
      let result = try await GPSProcess.run(
        [
          "deployment", "run", "server-flow/MyPrefectDeployer", "--param", Self.snippet, "--id-key", "k1", "--tag", "x",
        ],
        directory: directory)
      #expect(result.status == 0, "\(result.stderr)")
      #expect(result.stdout.hasPrefix("enqueued run "))
      let logged = try events(directory)
      #expect(logged.count == 1)
      guard case .enqueued(let enqueued) = logged.first?.kind else {
        Issue.record("not an enqueue: \(logged)")
        return
      }
      #expect(enqueued.deployment == "server-flow/MyPrefectDeployer")
      #expect(enqueued.parametersJson == #"{"data_info":{"object_storage_urls":["a"],"dataset":"b"}}"#)
      #expect(enqueued.parameters.first?.type == "gps.v1.DataInfo")
      #expect(enqueued.tags == ["server-flow", "x"])
      #expect(enqueued.idempotencyKey == "k1")
      // The same key again: the same run, nothing new in the log.
      let again = try await GPSProcess.run(
        ["deployment", "run", "server-flow/MyPrefectDeployer", "--param", Self.snippet, "--id-key", "k1"],
        directory: directory)
      #expect(again.status == 0)
      #expect(again.stdout.contains("already has idempotency key \"k1\""))
      #expect(try events(directory).count == 1)
    }
  }

  @Test func paramsFromAFileAndFromStandardInput() async throws {
    try await withTemporaryDirectory { directory in
      try await createServerFlowQueue(at: directory.path + "/data")
      try directory.writeFile("p.json", Array(#"{"data_info": {"object_storage_urls": ["a"], "dataset": "f"}}"#.utf8))
      let file = try await GPSProcess.run(
        ["deployment", "run", "server-flow/MyPrefectDeployer", "--params", "@p.json"], directory: directory)
      #expect(file.status == 0, "\(file.stderr)")
      let stdin = try await GPSProcess.run(
        ["deployment", "run", "server-flow/MyPrefectDeployer", "--params", "-"], directory: directory,
        stdin: #"{"data_info": {"dataset": "s"}}"#)
      #expect(stdin.status == 0, "\(stdin.stderr)")
      let datasets = try events(directory).compactMap { event -> String? in
        guard case .enqueued(let enqueued) = event.kind else { return nil }
        return enqueued.parametersJson
      }
      #expect(
        datasets == [#"{"data_info":{"object_storage_urls":["a"],"dataset":"f"}}"#, #"{"data_info":{"dataset":"s"}}"#])
    }
  }

  @Test(arguments: [
    (["--param", #"data_info={"dataset": 5}"#], "data_info.dataset: expected a string, got the number 5"),
    (
      ["--param", #"data_info={"object_storage_url": ["a"]}"#],
      "data_info.object_storage_url: unknown field; did you mean object_storage_urls?"
    ),
    ([], "missing required parameter data_info"),
    (["--param", "datainfo=x"], #"unknown parameter "datainfo"; this deployment takes: data_info"#),
    (["--param", "data_info"], "--param data_info: expected NAME=VALUE"),
    (["--params", "{"], "--params: not valid JSON"),
    (["--params", "@missing.json"], "--params @missing.json: cannot read it"),
    (["--start-in", "soon"], "--start-in"),
  ])
  func aRejectedRunWritesNothingAndSaysWhy(arguments: [String], expected: String) async throws {
    try await withTemporaryDirectory { directory in
      try await createServerFlowQueue(at: directory.path + "/data")
      let result = try await GPSProcess.run(
        ["deployment", "run", "server-flow/MyPrefectDeployer"] + arguments, directory: directory)
      #expect(result.status != 0)
      #expect(result.stderr.hasPrefix("gps: error: "))
      #expect(result.stderr.contains(expected), "\(result.stderr)")
      #expect(result.stderr.filter { $0 == "\n" }.count == 1)
      #expect(try events(directory).isEmpty)
    }
  }

  @Test func anUnknownDeploymentIsNamed() async throws {
    try await withTemporaryDirectory { directory in
      let data = directory.path + "/data"
      try await createServerFlowQueue(at: data)
      let result = try await GPSProcess.run(["deployment", "run", "server-flow/Nope", "--data-dir", data])
      #expect(result.status != 0)
      #expect(
        result.stderr
          == "gps: error: server-flow/Nope: no deployment is named \"server-flow/Nope\" (registered: server-flow/MyPrefectDeployer); `gps deployment ls` lists them\n"
      )
    }
  }
}
