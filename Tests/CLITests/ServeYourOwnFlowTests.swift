import Foundation
import GPSModel
import GPSTestSupport
import Queue
import Testing

/// A worker package of its own (Examples/inventory-worker, built against GPS's public API only)
/// serving its own typed flow to a `gps server start` that never linked its types: real processes.
@Suite struct ServeYourOwnFlowTests {
  static let order =
    #"order={"customer": "ann", "items": [{"sku": "x", "quantity": 3}], "priority": "RUSH", "due": "2026-12-24T10:00:00Z"}"#

  final class Setup: Sendable {
    let root: URL
    let server: GPSProcess
    let address: String
    var data: String { root.path + "/data" }

    init(root: URL) async throws {
      self.root = root
      server = try GPSProcess([
        "server", "start", "--data-dir", root.path + "/data", "--port", "0", "--no-scheduler", "--lease-duration", "2s",
      ])
      address = try await server.listeningAddress()
    }

    func worker(_ arguments: [String] = []) async throws -> GPSProcess {
      let worker = try GPSProcess(["--server", address] + arguments, executable: GPSProcess.exampleWorker)
      await worker.waitForOutput { stdout, stderr in stdout.contains("serving") || stderr.contains("error") }
      return worker
    }

    func gps(_ arguments: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
      try await GPSProcess.run(arguments + ["--data-dir", data], directory: root)
    }

    /// The run's state as `flow-run inspect --output json` says.
    func state(_ id: String) async throws -> String {
      let inspect = try await gps(["flow-run", "inspect", id, "--output", "json"])
      let json = try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any]
      return json?["state"] as? String ?? "?"
    }

    /// Run events in the log (not the queue's own records).
    func runEvents() throws -> [RunEvent] {
      var events: [RunEvent] = []
      try QueueHistory(directory: data).events { _, event in
        if !event.isQueueRecord { events.append(event) }
        return true
      }
      return events
    }

    func deploymentRow(_ name: String) async throws -> [Substring] {
      let list = try await gps(["deployment", "ls"])
      let row = list.stdout.split(separator: "\n").first { $0.hasPrefix(name + " ") }
      return row?.split(separator: " ", omittingEmptySubsequences: true) ?? []
    }
  }

  static func runID(_ stdout: String) -> String? {
    guard let range = stdout.range(of: #"run [0-9a-f-]{36}"#, options: .regularExpression) else { return nil }
    return String(stdout[range].dropFirst(4))
  }

  /// The worker SDK links no storage engine: the example's binary names no SQLite or LZ4 symbol,
  /// where the server's (read the same way) names both.
  @Test func theExampleWorkerLinksNoStorageEngine() throws {
    func names(_ symbol: String, in binary: URL) throws -> Bool {
      try Data(contentsOf: binary, options: .alwaysMapped).range(of: Data(symbol.utf8)) != nil
    }
    for symbol in ["sqlite3_open", "LZ4_compress"] {
      #expect(try names(symbol, in: GPSProcess.binary), "the search finds \(symbol) in gps")
      #expect(try !names(symbol, in: GPSProcess.exampleWorker), "the example worker links \(symbol)")
    }
  }

  @Test func anOutsideWorkerRegistersAndServesItsOwnTypedFlow() async throws {
    #expect(
      FileManager.default.fileExists(atPath: GPSProcess.exampleWorker.path),
      "build the example first: swift build --product InventoryWorker")
    try await withTemporaryDirectory { root in
      let setup = try await Setup(root: root)
      let worker = try await setup.worker(["--id", "w1"])
      try await eventually("the deployment to be ready") {
        try await setup.deploymentRow("inventory/quote").prefix(3) == ["inventory/quote", "1", "READY"]
      }
      // Valid JSON becomes the worker's own message; the result shows as its own type.
      let run = try await setup.gps(["deployment", "run", "inventory/quote", "--param", Self.order, "--watch"])
      #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
      #expect(run.stdout.contains("result (inventory.v1.Quote):"), "\(run.stdout)")
      #expect(run.stdout.contains(#""total_cents": "1500""#), "\(run.stdout)")
      let inspect = try await setup.gps(["deployment", "inspect", "inventory/quote"])
      #expect(inspect.stdout.contains(#""format": "date-time""#), "\(inspect.stdout)")
      #expect(inspect.stdout.contains(#""enum": ["#), "\(inspect.stdout)")

      // Every problem named by its path, and nothing written.
      let before = try setup.runEvents().count
      for (order, expected) in [
        (#"{"customer": 5, "items": []}"#, "order.customer: expected a string, got the number 5"),
        (#"{"items": [{"sku": "x", "qty": 1}]}"#, "order.items[0].qty: unknown field"),
        (#"{"priority": "FAST"}"#, #"order.priority: "FAST" is not a value of inventory.v1.Priority"#),
        (#"{"due": "tomorrow"}"#, "order.due: expected an RFC 3339 timestamp string"),
      ] {
        let refused = try await setup.gps(["deployment", "run", "inventory/quote", "--param", "order=\(order)"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains(expected), "\(refused.stderr)")
        #expect(refused.stderr.split(separator: "\n").count == 1, "\(refused.stderr)")
      }
      #expect(try setup.runEvents().count == before)

      // A second worker for another deployment: each receives only its own runs.
      let rush = try await setup.worker(["--deployment", "rush", "--id", "w2"])
      try await eventually("the rush deployment to be ready") {
        try await setup.deploymentRow("inventory/rush").prefix(3) == ["inventory/rush", "1", "READY"]
      }
      var ids: [String: String] = [:]
      for name in ["quote", "rush", "quote", "rush"] {
        let enqueued = try await setup.gps(["deployment", "run", "inventory/\(name)", "--param", Self.order, "--watch"])
        #expect(enqueued.status == 0, "\(enqueued.stderr)")
        ids[try #require(Self.runID(enqueued.stdout))] = name == "quote" ? "w1" : "w2"
      }
      for event in try setup.runEvents() {
        if case .claimed(let claimed) = event.kind, let id = event.run?.description, let expected = ids[id] {
          #expect(claimed.scheduler == expected, "run \(id) went to \(claimed.scheduler)")
        }
      }
      rush.signal(SIGTERM)
      #expect(await rush.waitForExit() == 0)

      // The worker dies mid-run: the run waits (re-queued by its crash policy), a new run stays
      // Scheduled, and both complete when a worker comes back.
      worker.signal(SIGKILL)
      _ = await worker.waitForExit()
      let slow = try await setup.worker(["--id", "w3", "--delay-ms", "60000"])
      let inFlight = try await setup.gps(["deployment", "run", "inventory/quote", "--param", Self.order])
      let first = try #require(Self.runID(inFlight.stdout))
      try await eventually("the run to be running") { try await setup.state(first) == "Running" }
      slow.signal(SIGKILL)
      _ = await slow.waitForExit()
      let waiting = try await setup.gps(["deployment", "run", "inventory/quote", "--param", Self.order])
      let second = try #require(Self.runID(waiting.stdout))
      try await eventually("the lost run to be re-queued") { try await setup.state(first) == "AwaitingRetry" }
      try await eventually("the deployment to be not ready") {
        try await setup.deploymentRow("inventory/quote").prefix(3) == ["inventory/quote", "1", "NOT_READY"]
      }
      #expect(try await setup.state(second) == "Scheduled")
      let back = try await setup.worker(["--id", "w4"])
      try await eventually("both runs to complete") {
        let states = [try await setup.state(first), try await setup.state(second)]
        return states == ["Completed", "Completed"]
      }
      back.signal(SIGTERM)
      #expect(await back.waitForExit() == 0)

      // A changed parameter type is a new version; a run queued against version 1 still runs.
      let old = try await setup.gps(
        ["deployment", "run", "inventory/quote", "--param", Self.order, "--param", "discount=0.5"])
      #expect(old.status == 0, "\(old.stderr)")
      let oldID = try #require(Self.runID(old.stdout))
      let changed = try await setup.worker(["--id", "w5", "--discount-type", "int64"])
      try await eventually("version 2") {
        try await setup.deploymentRow("inventory/quote").prefix(2) == ["inventory/quote", "2"]
      }
      try await eventually("the version-1 run to complete") { try await setup.state(oldID) == "Completed" }
      let refused = try await setup.gps(
        ["deployment", "run", "inventory/quote", "--param", Self.order, "--param", "discount=0.5"])
      #expect(refused.status == 1)
      #expect(refused.stderr.contains("discount: expected an integer (int64), got the number 0.5"), "\(refused.stderr)")
      changed.signal(SIGTERM)
      #expect(await changed.waitForExit() == 0)

      // The audit covers the registrations.
      let replay = try await setup.gps(["history", "replay"])
      #expect(replay.stdout.contains("DeploymentRegistered  deployment=inventory/quote version=2"), "\(replay.stdout)")
      var registration: UInt64 = 0
      try QueueHistory(directory: setup.data).events { sequence, event in
        if case .deploymentRegistered(let registered) = event.kind, registered.version == 2 { registration = sequence }
        return true
      }
      let asBefore = try await setup.gps(["history", "state", "--at", String(registration - 1)])
      #expect(asBefore.stdout.contains("inventory/quote v1"), "\(asBefore.stdout)")
      let asAfter = try await setup.gps(["history", "state", "--at", String(registration)])
      #expect(asAfter.stdout.contains("inventory/quote v2"), "\(asAfter.stdout)")
      let verify = try await setup.gps(["history", "verify"])
      #expect(verify.status == 0, "\(verify.stderr)")
      setup.server.signal(SIGTERM)
      #expect(await setup.server.waitForExit() == 0)
    }
  }
}
