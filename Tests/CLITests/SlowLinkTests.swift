import Control
import Flows
import Foundation
import GPSModel
import GPSTestSupport
import GRPCCore
import Queue
import RPC
import ReferenceFlow
import Services
import SwiftProtobuf
import Testing

/// A remote scheduler over a slow link (a delaying TCP proxy: 100 ms each way), and a link cut
/// while the server shuts down.
@Suite struct SlowLinkTests {
  /// `python3 Tests/python/delay_proxy.py` in front of `target`; its address once it listens.
  final class DelayProxy: Sendable {
    let process: Process
    let address: String
    /// The Python process itself (a launcher may run it as its child).
    let pid: pid_t

    init(target: String, delay: Double) throws {
      let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("python/delay_proxy.py")
      let process = Process()
      process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
      process.arguments = ["python3", script.path, "--target", target, "--delay", String(delay)]
      let output = Pipe()
      process.standardOutput = output
      process.standardError = FileHandle.nullDevice
      try process.run()
      var line = Data()
      while !line.contains(UInt8(ascii: "\n")) {
        let chunk = output.fileHandleForReading.availableData
        guard !chunk.isEmpty else { throw ProcessFailure(message: "the delay proxy ended before it listened") }
        line.append(chunk)
      }
      let text = String(decoding: line, as: UTF8.self)
      guard let range = text.range(of: "127.0.0.1:[0-9]+", options: .regularExpression) else {
        throw ProcessFailure(message: "the delay proxy said \(text)")
      }
      self.process = process
      address = String(text[range])
      guard let pidRange = text.range(of: "pid [0-9]+", options: .regularExpression),
        let pid = pid_t(text[pidRange].dropFirst(4))
      else { throw ProcessFailure(message: "the delay proxy said \(text)") }
      self.pid = pid
    }

    /// Stops forwarding, keeping the connections open: a cut link.
    func cut() { kill(pid, SIGUSR1) }

    /// Ends the proxy and waits for it: none outlives its test.
    func stop() {
      kill(pid, SIGKILL)
      guard process.isRunning else { return }
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
    }

    deinit { stop() }
  }

  @Test func leasesOfManyRunsHoldOverASlowLinkAndACutLinkDoesNotHoldTheServerOpen() async throws {
    try await withTemporaryDirectory { root in
      let bench = try await Workbench(root: root, bArguments: ["--latency", "4s"])
      try await createServerFlowQueue(at: bench.data)
      let (server, address) = try await bench.startServer([
        "--no-scheduler", "--lease-duration", "3s", "--grace", "1s",
      ])
      let proxy = try DelayProxy(target: address, delay: 0.1)
      defer { proxy.stop() }
      let serverAddress = try ServiceAddress(parsing: address, what: "server")
      var ids: [String] = []
      try await withControlClient(serverAddress) { control in
        for index in 0..<32 {
          let response = try await control.enqueue(
            .with {
              $0.deployment = "server-flow/MyPrefectDeployer"
              $0.parametersJson = #"{"data_info": {"object_storage_urls": ["a"], "dataset": "d\#(index)"}}"#
            })
          ids.append(response.run.id)
        }
      }
      let scheduler = try GPSProcess([
        "scheduler", "--server", proxy.address, "--a", bench.aAddress, "--b", bench.bAddress, "--concurrency", "32",
      ])
      try await eventually("every run to complete", limit: .seconds(90)) {
        try await withControlClient(serverAddress) { control in
          let runs = try await control.listRuns(.with { $0.limit = 100 }).runs
          return runs.count == 32 && runs.allSatisfy { ["Completed", "Crashed", "Failed"].contains($0.state) }
        }
      }
      let expired = try bench.history().filter { if case .leaseExpired = $0.1.kind { true } else { false } }
      #expect(expired.isEmpty, "\(expired.count) leases expired")
      let completed = try bench.history().filter { if case .completed = $0.1.kind { true } else { false } }
      #expect(completed.count == 32)
      #expect(!scheduler.stderr.contains("lease lost"), "\(scheduler.stderr)")
      #expect(!scheduler.stderr.contains("heartbeat failed"), "\(scheduler.stderr)")

      // A client across the link holds a stream open (an enqueue stream it has not finished),
      // then the link is cut: SIGTERM still ends the server within its grace and the shutdown
      // bound (5 s), not when the link comes back.
      let proxyAddress = try ServiceAddress(parsing: proxy.address, what: "proxy")
      let opened = AsyncStream.makeStream(of: Void.self)
      let streaming = Task {
        try await withControlClient(proxyAddress) { control in
          try await control.enqueueStream { writer in
            try await writer.write(
              .with {
                $0.deployment = "server-flow/MyPrefectDeployer"
                $0.parametersJson = #"{"data_info": {"dataset": "open"}}"#
              })
            try await Task.sleep(for: .seconds(600))
          } onResponse: { response in
            for try await _ in response.messages { opened.continuation.yield() }
          }
        }
      }
      for await _ in opened.stream { break }
      proxy.cut()
      let stopping = ContinuousClock.now
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0, "\(server.stderr)")
      #expect(ContinuousClock.now - stopping < .seconds(12), "\(ContinuousClock.now - stopping)")
      #expect(server.stderr.contains("closing them"), "\(server.stderr)")
      streaming.cancel()
      scheduler.signal(SIGKILL)
      _ = await scheduler.waitForExit()
    }
  }
}
