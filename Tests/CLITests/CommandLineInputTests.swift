import Flows
import Foundation
import GPSModel
import GPSTestSupport
import Queue
import ReferenceFlow
import Testing

/// What a hostile user typed, and what a closed pipe does: one clear line that names the value and
/// what is accepted, never a backtrace.
@Suite struct CommandLineInputTests {
  static let snippet = #"data_info={"object_storage_urls": ["a"], "dataset": "b"}"#

  /// Runs `gps ARGUMENTS` with its stdout a pipe nobody reads (closed before the start): every
  /// write fails with EPIPE.
  func runWithClosedStdout(_ arguments: [String]) async throws -> (status: Int32, stderr: String) {
    let process = Process()
    process.executableURL = GPSProcess.binary
    process.arguments = arguments
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    process.standardInput = FileHandle.nullDevice
    try output.fileHandleForReading.close()
    let (ended, end) = AsyncStream.makeStream(of: Int32.self, bufferingPolicy: .bufferingNewest(1))
    process.terminationHandler = { end.yield($0.terminationStatus) }
    try process.run()
    try output.fileHandleForWriting.close()
    let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    var status: Int32 = -1
    for await value in ended {
      status = value
      break
    }
    return (status, stderr)
  }

  /// A queue of 120 runs (output larger than a pipe holds).
  func makeQueue(_ path: String) async throws -> RunID {
    let queue = try RunQueue(directory: path)
    _ = try await queue.register(DeploymentRegistry.standard.definitions, worker: "test", by: "test")
    var last: RunID?
    for index in 0..<120 {
      last = try await queue.enqueue(
        EnqueueRequest(
          deployment: "server-flow/MyPrefectDeployer", flow: "server-flow",
          parametersJSON: #"{"data_info":{"dataset":"d\#(index)"}}"#)
      ).run.id
    }
    queue.close()
    return last!
  }

  @Test func everyCommandEndsQuietlyOnAClosedPipe() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      let id = try await makeQueue(data)
      for arguments in [
        ["flow-run", "inspect", id.description], ["flow-run", "ls", "--output", "json", "--limit", "100"],
        ["history", "replay"], ["history", "replay", "--output", "jsonl"],
      ] {
        let result = try await runWithClosedStdout(arguments + ["--data-dir", data])
        #expect(result.status == 0, "\(arguments): \(result.stderr)")
        #expect(result.stderr.isEmpty, "\(arguments): \(result.stderr)")
      }
      for arguments in [
        ["deployment", "ls", "--data-dir", data], ["--help"],
        ["deployment", "inspect", "server-flow/MyPrefectDeployer", "--data-dir", data],
      ] {
        let result = try await runWithClosedStdout(arguments)
        #expect(result.status == 0, "\(arguments): \(result.stderr)")
        #expect(result.stderr.isEmpty, "\(arguments): \(result.stderr)")
      }
    }
  }

  @Test(arguments: [
    (["enqueue", "server-flow/MyPrefectDeployer", "--start-in", "-5s"], "'-5s' is invalid for '--start-in"),
    (["enqueue", "server-flow/MyPrefectDeployer", "--start-in", "-5s"], "it is negative; use a number with a unit"),
    (
      ["enqueue", "server-flow/MyPrefectDeployer", "--start-in", "5"],
      "it has no unit; use a number with a unit (ns, us"
    ),
    (["enqueue", "server-flow/MyPrefectDeployer", "--start-in", "99999999d"], "it is too long; at most 106751d"),
    (["flow-run", "ls", "--limit", "-1"], "--limit must be at least 1"),
    (["server", "a", "--fail-rate", "-0.5"], "--fail-rate -0.5 is out of range"),
    (["server", "start", "--grace", "-1s"], "'-1s' is invalid for '--grace"),
    (
      ["enqueue", "server-flow/MyPrefectDeployer", "--param", #"data_info={"dataset": "b""#],
      "--param data_info: not valid JSON: the JSON ends inside an object"
    ),
    (
      ["enqueue", "server-flow/MyPrefectDeployer", "--params", "@sub"],
      "--params @sub: cannot read it (it is a directory, not a file)"
    ),
    (["history", "replay", "--since", "10", "--until", "5"], "--since is after --until"),
  ])
  func badValuesAreOneLineNamingWhatIsAccepted(arguments: [String], message: String) async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      try await createServerFlowQueue(at: data)
      try FileManager.default.createDirectory(atPath: root.path + "/sub", withIntermediateDirectories: true)
      let result = try await GPSProcess.run(arguments + ["--data-dir", data], directory: root)
      #expect(result.status != 0)
      #expect(result.stderr.hasPrefix("gps: error: "), "\(result.stderr)")
      #expect(result.stderr.contains(message), "\(result.stderr)")
      #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
    }
  }

  @Test func compoundDurationsAreAccepted() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      try await createServerFlowQueue(at: data)
      let before = SystemClock().now()
      let result = try await GPSProcess.run([
        "enqueue", "server-flow/MyPrefectDeployer", "--param", Self.snippet, "--start-in", "1h30m", "--data-dir", data,
      ])
      #expect(result.status == 0, "\(result.stderr)")
      let run = try QueueHistory(directory: data).state(at: .sequence(.max)).runs.values.first
      let delay = (run?.scheduledStart ?? before) - before
      #expect(delay >= .seconds(5400) && delay < .seconds(5460), "\(delay)")
    }
  }

  @Test func aDataDirectoryThatIsAFileIsNamed() async throws {
    try await withTemporaryDirectory { root in
      try root.writeFile("file", Array("x".utf8))
      for arguments in [
        ["server", "start", "--port", "0"], ["flow-run", "ls"],
        ["enqueue", "server-flow/MyPrefectDeployer", "--param", Self.snippet],
      ] {
        let result = try await GPSProcess.run(arguments + ["--data-dir", root.path + "/file"])
        #expect(result.status == 1)
        #expect(
          result.stderr
            == "gps: error: the data directory \(root.path)/file is a file, not a directory; give another --data-dir\n",
          "\(result.stderr)")
      }
    }
  }

  @Test func invalidUTF8InAnArgumentIsRefusedNotReplaced() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      try await createServerFlowQueue(at: data)
      let script =
        #""$0" enqueue server-flow/MyPrefectDeployer --data-dir "$1" --param "data_info={\"dataset\": \"a$(printf '\377')\"}""#
      let process = Process()
      process.executableURL = URL(fileURLWithPath: "/bin/bash")
      process.arguments = ["-c", script, GPSProcess.binary.path, data]
      let errors = Pipe()
      process.standardError = errors
      process.standardOutput = FileHandle.nullDevice
      try process.run()
      let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
      process.waitUntilExit()
      #expect(process.terminationStatus != 0)
      #expect(stderr.hasPrefix("gps: error: --param (parameter data_info): the value is not valid UTF-8"), "\(stderr)")
      #expect(try QueueHistory(directory: data).state(at: .sequence(.max)).runs.isEmpty)
    }
  }

  @Test func cancellingAFinishedRunSaysItIsAlreadyFinished() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      let id = try await makeQueue(data)
      let first = try await GPSProcess.run(["flow-run", "cancel", id.description, "--data-dir", data])
      #expect(first.status == 0, "\(first.stderr)")
      let second = try await GPSProcess.run(["flow-run", "cancel", id.description, "--data-dir", data])
      #expect(second.status == 1)
      #expect(second.stderr.hasPrefix("gps: error: run \(id) is already Cancelled"), "\(second.stderr)")
    }
  }

  @Test func aServerThatIsNotAGPSControlServerIsNamed() async throws {
    try await withTemporaryDirectory { root in
      try await withRunningServices(objectRoot: root) { a, _ in
        let result = try await GPSProcess.run(["flow-run", "ls", "--server", "\(a)", "--data-dir", root.path])
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("gps: error: \(a) is not a GPS control server"), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1)
      }
    }
  }
}
