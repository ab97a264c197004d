import Control
import Crypto
import Flows
import Foundation
import GPSModel
import GPSTestSupport
import GRPCCore
import GRPCNIOTransportHTTP2
import Queue
import RPC
import ReferenceFlow
import Services
import SwiftProtobuf
import Testing

@Suite struct ControlServerTests {
  @Test func theFourTerminalWorkflowRunsTheSnippetToCompletion() async throws {
    try await withTemporaryDirectory { root in
      let bench = try await Workbench(root: root)
      let (server, address) = try await bench.startServer()
      #expect(try String(contentsOfFile: bench.data + "/server.addr", encoding: .utf8) == address + "\n")

      let watched = try await bench.gps(
        ["deployment", "run", "server-flow/MyPrefectDeployer", "--param", Workbench.snippet, "--watch"])
      #expect(watched.status == 0, "\(watched.stderr)")
      #expect(watched.stdout.contains("Completed"))
      // The digest the services must have computed: SHA-256 over the object's raw SHA-256.
      let objectDigest = Data(SHA256.hash(data: Data("hello".utf8)))
      let datasetDigest = SHA256.hash(data: objectDigest).map { String(format: "%02x", $0) }.joined()
      #expect(watched.stdout.contains(#""dataset_digest": "\#(datasetDigest)""#))
      let id = try #require(Workbench.runID(watched.stdout))

      // Listed and inspected through the server.
      let list = try await bench.gps(["flow-run", "ls", "--output", "json"])
      let runs = try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
      #expect(runs.count == 1)
      #expect(runs.first?["id"] as? String == id)
      #expect(runs.first?["state"] as? String == "Completed")
      let inspect = try await bench.gps(["flow-run", "inspect", String(id.prefix(8))])
      #expect(inspect.status == 0, "\(inspect.stderr)")
      #expect(inspect.stdout.contains("prepare  1"))
      #expect(inspect.stdout.contains("process  1"))

      // The history, as JSON lines, in order.
      let replay = try await bench.gps(["history", "replay", "--run", id, "--output", "jsonl"])
      let types = replay.stdout.split(separator: "\n").compactMap { line in
        (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["type"] as? String
      }
      #expect(
        types == [
          "RunEnqueued", "RunClaimed", "RunStarted", "TaskAttemptStarted", "TaskAttemptSucceeded", "TaskAttemptStarted",
          "TaskAttemptSucceeded", "RunCompleted",
        ])
      // As a table: the sequence numbers are right-aligned under SEQ, so every column lines up.
      let table = try await bench.gps(["history", "replay", "--run", id])
      let lines = table.stdout.split(separator: "\n").map(String.init)
      #expect(lines.count == 9, "\(table.stdout)")
      #expect(lines.first?.hasPrefix("     SEQ  TIME") == true, "\(table.stdout)")
      for (index, line) in lines.dropFirst().enumerated() {
        // Event 1 is the registration of server-flow by `gps server start`.
        #expect(line.hasPrefix(String(repeating: " ", count: 7) + "\(index + 2)  20"), "\(line)")
      }
      let verify = try await bench.gps(["history", "verify"])
      #expect(verify.status == 0, "\(verify.stderr)")
      #expect(verify.stdout.contains("history verified: 9 events of 1 runs"), "\(verify.stdout)")

      // SIGTERM: exit 0, a snapshot written, the address withdrawn, the directory free again.
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0, "\(server.stderr)")
      #expect(!FileManager.default.fileExists(atPath: bench.data + "/server.addr"))
      // A clean stop leaves the run index at the log's end: the next start replays nothing.
      #expect(FileManager.default.fileExists(atPath: bench.data + "/index/runs.db"))
      #expect(!FileManager.default.fileExists(atPath: bench.data + "/snapshots"))
      let offline = try await bench.gps(["enqueue", "server-flow/MyPrefectDeployer", "--param", Workbench.snippet])
      #expect(offline.status == 0, "\(offline.stderr)")
      #expect(offline.stdout.contains("no server is running"))
    }
  }

  @Test func watchExitsNonZeroWithTheReasonWhenARunFails() async throws {
    try await withTemporaryDirectory { root in
      // B always answers UNAVAILABLE: three attempts, then Failed.
      let bench = try await Workbench(root: root, bArguments: ["--fail-rate", "1"])
      let (server, _) = try await bench.startServer()
      let watched = try await bench.gps(
        ["deployment", "run", "server-flow/MyPrefectDeployer", "--param", Workbench.snippet, "--watch"])
      #expect(watched.status == 1, "\(watched.stdout) \(watched.stderr)")
      #expect(watched.stdout.contains("Failed: step process failed after 3 attempts: UNAVAILABLE"))
      #expect(watched.stdout.components(separatedBy: "TaskAttemptFailed").count - 1 == 3)
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0)
    }
  }

  @Test func watchExitsNonZeroWhenTheRunIsCancelled() async throws {
    try await withTemporaryDirectory { root in
      let bench = try await Workbench(root: root, bArguments: ["--latency", "60s"])
      let (server, _) = try await bench.startServer()
      let watch = try GPSProcess(
        [
          "deployment", "run", "server-flow/MyPrefectDeployer", "--param", Workbench.snippet, "--watch", "--data-dir",
          bench.data,
        ], directory: root)
      await watch.waitForOutput { stdout, _ in stdout.contains("step=process attempt=1") }
      let id = try #require(Workbench.runID(watch.stdout))
      let cancel = try await bench.gps(["flow-run", "cancel", id, "--reason", "not needed"])
      #expect(cancel.status == 0, "\(cancel.stderr)")
      #expect(await watch.waitForExit() == 3, "\(watch.stdout) \(watch.stderr)")
      #expect(watch.stdout.contains("Cancelled"))
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0)
    }
  }

  @Test func sigtermEndsOpenWatchesAndTheServerStillExitsWithinItsGrace() async throws {
    try await withTemporaryDirectory { root in
      let bench = try await Workbench(root: root, bArguments: ["--latency", "60s"])
      let (server, _) = try await bench.startServer(["--grace", "200ms"])
      let watch = try GPSProcess(
        [
          "deployment", "run", "server-flow/MyPrefectDeployer", "--param", Workbench.snippet, "--watch", "--data-dir",
          bench.data,
        ], directory: root)
      await watch.waitForOutput { stdout, _ in stdout.contains("step=process attempt=1") }
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0, "\(server.stderr)")
      #expect(server.stderr.contains("grace period over"))
      // The watch could not follow the run: its own status, not the run's (which is not over).
      #expect(await watch.waitForExit() == 5)
      #expect(watch.stderr.contains("is enqueued, but its watch ended: "), "\(watch.stderr)")
      #expect(watch.stderr.contains("the server is stopping; watch again once it is back"), "\(watch.stderr)")
      #expect(watch.stderr.split(separator: "\n").count == 1, "\(watch.stderr)")
    }
  }

  @Test func aRunEnqueuedWithoutAServerRunsWhenOneStarts() async throws {
    try await withTemporaryDirectory { root in
      let bench = try await Workbench(root: root)
      try await createServerFlowQueue(at: bench.data)
      // Watching without a server follows the log file until a server executes the run.
      let watch = try GPSProcess(
        [
          "deployment", "run", "server-flow/MyPrefectDeployer", "--param", Workbench.snippet, "--watch", "--data-dir",
          bench.data,
        ], directory: root)
      await watch.waitForOutput { stdout, _ in stdout.contains("no server is running") }
      #expect(watch.stdout.contains("Scheduled"))
      let (server, _) = try await bench.startServer()
      #expect(await watch.waitForExit() == 0, "\(watch.stdout) \(watch.stderr)")
      #expect(watch.stdout.contains("RunCompleted"))
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0)
    }
  }

  @Test func aSecondServerOnTheSameDirectoryRefusesClearly() async throws {
    try await withTemporaryDirectory { root in
      let bench = try await Workbench(root: root)
      let (server, _) = try await bench.startServer()
      let second = try await GPSProcess.run(["server", "start", "--data-dir", bench.data, "--port", "0"])
      #expect(second.status == 1)
      #expect(
        second.stderr.hasPrefix(
          "gps: error: data directory \(bench.data) is in use by server process \(server.processIdentifier)"),
        "\(second.stderr)")
      #expect(second.stderr.split(separator: "\n").count == 1, "\(second.stderr)")
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0)
    }
  }

  @Test func everyAcknowledgedEnqueueSurvivesSIGKILLAndFinishes() async throws {
    try await withTemporaryDirectory { root in
      let bench = try await Workbench(root: root)
      let (server, address) = try await bench.startServer(["--concurrency", "4", "--lease-duration", "1s"])
      let acknowledged = try await withControlClient(try ServiceAddress(parsing: address, what: "address")) { control in
        try await withThrowingTaskGroup(of: [String].self) { group in
          for client in 0..<8 {
            group.addTask {
              var ids: [String] = []
              while true {
                do {
                  let response = try await control.enqueue(
                    .with {
                      $0.deployment = "server-flow/MyPrefectDeployer"
                      $0.parametersJson = #"{"data_info": {"object_storage_urls": ["a"], "dataset": "k\#(client)"}}"#
                    })
                  ids.append(response.run.id)
                  if client == 0, ids.count == 40 { server.signal(SIGKILL) }
                } catch {
                  return ids
                }
              }
            }
          }
          var all: [String] = []
          for try await ids in group { all += ids }
          return all
        }
      }
      _ = await server.waitForExit()
      #expect(acknowledged.count >= 40)
      let (restarted, newAddress) = try await bench.startServer(["--concurrency", "8", "--lease-duration", "1s"])
      try await withControlClient(try ServiceAddress(parsing: newAddress, what: "address")) { control in
        for id in acknowledged {
          _ = try await control.getRun(.with { $0.runID = id })
        }
        try await eventually("every acknowledged run to complete") {
          var finished = 0
          for id in acknowledged where try await control.getRun(.with { $0.runID = id }).state == "Completed" {
            finished += 1
          }
          return finished == acknowledged.count
        }
      }
      restarted.signal(SIGTERM)
      #expect(await restarted.waitForExit() == 0)
      let verify = try await bench.gps(["history", "verify"])
      #expect(verify.status == 0, "\(verify.stderr)")
    }
  }

  @Test func historyVerifyFindsATamperedLogAndAnIllegalTransition() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      try await createServerFlowQueue(at: data)
      for index in 0..<3 {
        let enqueued = try await GPSProcess.run([
          "enqueue", "server-flow/MyPrefectDeployer", "--param",
          #"data_info={"object_storage_urls": ["a"], "dataset": "d\#(index)"}"#, "--data-dir", data,
        ])
        #expect(enqueued.status == 0, "\(enqueued.stderr)")
      }
      let intact = try await GPSProcess.run(["history", "verify", "--data-dir", data])
      #expect(intact.status == 0, "\(intact.stderr)")

      // A well-formed, checksummed event that the state machine refuses: completing a run that
      // was never claimed.
      let illegal = root.path + "/illegal"
      try FileManager.default.copyItem(atPath: data, toPath: illegal)
      let state = try QueueHistory(directory: illegal).state(at: .sequence(.max))
      let run = try #require(state.runs.values.first)
      let log = try EventLog(directory: illegal)
      _ = try await log.append([
        try RunEvent.with {
          $0.timeMicros = state.lastTime.micros + 1
          $0.runID = Data(run.id.bytes)
          $0.runEvent = 2
          $0.completed = .init()
        }.serializedBytes()
      ])
      log.close()
      let refused = try await GPSProcess.run(["history", "verify", "--data-dir", illegal])
      #expect(refused.status == 1)
      #expect(
        refused.stderr.hasPrefix(
          "gps: error: history verify failed: event \(state.lastSequence + 1): run \(run.id): RunCompleted"))
      #expect(refused.stderr.split(separator: "\n").count == 1, "\(refused.stderr)")

      // One byte changed in the middle of the segment.
      let segmentName = try #require(try FileManager.default.contentsOfDirectory(atPath: data + "/log").first)
      let segment = data + "/log/" + segmentName
      var bytes = try Data(contentsOf: URL(fileURLWithPath: segment))
      bytes[bytes.count / 2] ^= 0x40
      try bytes.writeInPlace(to: URL(fileURLWithPath: segment))
      let tampered = try await GPSProcess.run(["history", "verify", "--data-dir", data])
      #expect(tampered.status == 1)
      #expect(tampered.stderr.hasPrefix("gps: error: history verify failed: storage: "), "\(tampered.stderr)")
      #expect(tampered.stderr.split(separator: "\n").count == 1, "\(tampered.stderr)")
    }
  }

  @Test(arguments: [
    (["flow-run", "inspect", "nope"], "'nope' is not a run id"),
    (["flow-run", "inspect", "0123456789"], "no run starts with 0123456789"),
    (["flow-run", "cancel", "01234567-89ab-cdef-0123-456789abcdef"], "no run 01234567-89ab-cdef-0123-456789abcdef"),
    (["flow-run", "ls", "--state", "Done"], "--state Done is unknown"),
    (["flow-run", "ls", "--server", "nowhere"], "--server 'nowhere': expected HOST:PORT"),
    (["history", "state", "--at", "yesterday"], "yesterday"),
    (["history", "replay", "--follow", "--until", "3"], "--follow and --until exclude each other"),
    (
      ["enqueue", "server-flow/MyPrefectDeployer", "--param", #"data_info={"dataset": 5}"#],
      "data_info.dataset: expected a string, got the number 5"
    ),
    (["enqueue", "server-flow/MyPrefectDeployer", "--start-at", "soon"], "--start-at 'soon' is not a time"),
    (["server", "start", "--lease-duration", "1ms"], "--lease-duration must be at least 100ms"),
  ])
  func badInputIsOneClearLine(arguments: [String], message: String) async throws {
    try await withTemporaryDirectory { root in
      // A queue with one run, and a server running on it.
      let data = root.path + "/data"
      try await createServerFlowQueue(at: data)
      let enqueued = try await GPSProcess.run([
        "enqueue", "server-flow/MyPrefectDeployer", "--param", Workbench.snippet, "--data-dir", data,
      ])
      #expect(enqueued.status == 0, "\(enqueued.stderr)")
      let server = try GPSProcess(["server", "start", "--data-dir", data, "--port", "0", "--no-scheduler"])
      _ = try await server.listeningAddress()
      let result = try await GPSProcess.run(arguments + ["--data-dir", data])
      #expect(result.status != 0)
      #expect(result.stderr.hasPrefix("gps: error: "), "\(result.stderr)")
      #expect(result.stderr.contains(message), "\(result.stderr)")
      #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0)
    }
  }
}
