import Foundation
import GPSTestSupport
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RPC
import ServiceLifecycle
import Services
import SwiftProtobuf
import Testing

/// Graceful shutdown: in-flight calls finish, health watchers are told NOT_SERVING, `run()` returns.
@Suite struct GracefulShutdownTests {
  /// A latency whose end the test decides: the call parks in `sleep` until `release()`.
  final class Gate: Sendable {
    let (entered, enteredContinuation) = AsyncStream.makeStream(of: Void.self)
    let (released, releasedContinuation) = AsyncStream.makeStream(of: Void.self)

    func sleep(_: Duration) async throws {
      enteredContinuation.yield()
      for await _ in released { return }
    }

    func release() { releasedContinuation.finish() }
  }

  @Test func inFlightCallsFinishAndWatchersEnd() async throws {
    let gate = Gate()
    try await withTemporaryDirectory { root in
      try root.writeFile("a", Array("x".utf8))
      var configuration = ServiceServer.Configuration()
      configuration.faults = FaultInjectionInterceptor(latency: .milliseconds(1), sleep: gate.sleep)
      let (listening, listeningContinuation) = AsyncStream.makeStream(of: ServiceAddress.self)
      let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
      let server = ServiceServer.a(
        store: try ObjectStore(root: root.path), configuration: configuration, logger: logger
      ) { listeningContinuation.yield($0) }
      let group = ServiceGroup(services: [server], logger: logger)

      try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        var addresses = listening.makeAsyncIterator()
        let address = try #require(await addresses.next())

        try await withGRPCClient(
          transport: .http2NIOPosix(target: address.resolvableTarget, transportSecurity: .plaintext)
        ) { client in
          let health = Grpc_Health_V1_Health.Client(wrapping: client)
          let a = Gps_V1_A.Client(wrapping: client)
          try await withThrowingTaskGroup(of: Void.self) { calls in
            let (statuses, statusContinuation) = AsyncStream.makeStream(
              of: Grpc_Health_V1_HealthCheckResponse.ServingStatus.self)
            calls.addTask {
              try await health.watch(.with { $0.service = "gps.v1.A" }) { response in
                for try await message in response.messages { statusContinuation.yield(message.status) }
                statusContinuation.finish()
              }
            }
            var statusIterator = statuses.makeAsyncIterator()
            #expect(await statusIterator.next() == .serving)

            calls.addTask {
              let manifest = try await a.prepare(
                .with {
                  $0.objectStorageUrls = ["a"]; $0.dataset = "d"
                })
              #expect(manifest.totalBytes == 1)
            }
            var entered = gate.entered.makeAsyncIterator()
            await entered.next()  // the call is in flight, parked in its latency

            await group.triggerGracefulShutdown()
            #expect(await statusIterator.next() == .notServing)
            #expect(await statusIterator.next() == nil)  // the watch stream ended

            gate.release()
            try await calls.waitForAll()  // the in-flight call completed successfully
          }
        }
        try await tasks.waitForAll()  // the server's run() returned
      }
    }
  }
}
