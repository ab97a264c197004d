import Foundation
import GPSTestSupport
import GRPCCore
import GRPCNIOTransportHTTP2
import RPC
import ReferenceFlow
import Services
import SwiftProtobuf
import Testing

/// `gps server a|b` as users run it: a real process, real signals.
@Suite struct ServerProcessTests {
  @Test func serverAPrintsItsAddressAnswersAndExitsZeroOnSIGTERM() async throws {
    try await withTemporaryDirectory { root in
      try root.writeFile("s3bucket/obj", Array("12345".utf8))
      let server = try GPSProcess(["server", "a", "--port", "0", "--object-root", root.path])
      let address = try ServiceAddress(parsing: try await server.listeningAddress(), what: "address")
      #expect(address.host == "127.0.0.1")
      #expect(address.port != 0)
      try await withServiceClients(a: address, b: address) { clients in
        let manifest = try await clients.a.prepare(
          .with {
            $0.objectStorageUrls = ["s3://s3bucket/obj"]; $0.dataset = "d"
          })
        #expect(manifest.totalBytes == 5)
      }
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0)
      #expect(server.stderr.contains("call finished"))
      #expect(server.stderr.contains("status=OK"))
    }
  }

  @Test func sigtermLetsAnInFlightCallFinish() async throws {
    // Long enough that SIGTERM surely arrives while the call waits out its latency.
    let server = try GPSProcess(["server", "b", "--port", "0", "--latency", "1500ms"])
    let address = try ServiceAddress(parsing: try await server.listeningAddress(), what: "address")
    try await withServiceClients(a: address, b: address) { clients in
      try await withThrowingTaskGroup(of: Gps_V1_Response.self) { group in
        group.addTask {
          try await clients.b.process(
            .with {
              $0.dataset = "d"
              $0.objects = [
                .with {
                  $0.url = "u"; $0.sizeBytes = 1; $0.sha256 = String(repeating: "ab", count: 32)
                }
              ]
              $0.objectCount = 1
              $0.totalBytes = 1
            }, metadata: [idempotencyKeyMetadataKey: "run-1/process/1"])
        }
        await server.waitForOutput { _, stderr in stderr.contains("call started") }
        server.signal(SIGTERM)
        await server.waitForOutput { _, stderr in stderr.contains("shutting down") }
        let response = try await group.next()
        #expect(response?.objectCount == 1)
      }
    }
    #expect(await server.waitForExit() == 0)
    #expect(server.stderr.contains("idempotency_key=run-1/process/1"))
    // The call finished after shutdown began.
    let log = server.stderr
    let shutdown = try #require(log.range(of: "shutting down"))
    let finished = try #require(log.range(of: "call finished"))
    #expect(shutdown.lowerBound < finished.lowerBound)
  }

  @Test func aPortInUseIsOneClearLine() async throws {
    let first = try GPSProcess(["server", "b", "--port", "0"])
    let address = try await first.listeningAddress()
    let port = String(address.split(separator: ":").last!)
    let second = try await GPSProcess.run(["server", "b", "--port", port])
    #expect(second.status != 0)
    #expect(second.stderr.contains("already in use"), "\(second.stderr)")
    #expect(second.stderr.hasPrefix("gps: error: "))
    first.signal(SIGINT)
    #expect(await first.waitForExit() == 0)
  }
}
