import Crypto
import Foundation
import GPSTestSupport
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RPC
import ServiceLifecycle
import Services
import SwiftProtobuf
import Synchronization
import Testing

/// Services A and B over real loopback gRPC on ephemeral ports.
@Suite struct ServicesTests {
  static let objects: [String: [UInt8]] = [
    "a": Array("object a\n".utf8),
    "bucket/one.csv": Array("id\n1\n".utf8),
    "bucket/nested/two.bin": (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 31) },
  ]

  func withStore<R: Sendable>(_ body: @Sendable (URL) async throws -> R) async throws -> R {
    try await withTemporaryDirectory { root in
      for (key, bytes) in Self.objects { try root.writeFile(key, bytes) }
      return try await body(root)
    }
  }

  func withClients<R: Sendable>(
    a: ServiceAddress, b: ServiceAddress,
    _ body: (Gps_V1_A.Client<HTTP2ClientTransport.Posix>, Gps_V1_B.Client<HTTP2ClientTransport.Posix>) async throws -> R
  ) async throws -> R {
    try await withServiceClients(a: a, b: b) { try await body($0.a, $0.b) }
  }

  @Test func aHugeURLIsAnsweredInvalidArgumentInOneShortMessage() async throws {
    try await withStore { root in
      try await withRunningServices(objectRoot: root) { a, b in
        try await withClients(a: a, b: b) { clientA, _ in
          let url = "s3://bucket/" + String(repeating: "u", count: 100_000)
          let error = await #expect(throws: RPCError.self) {
            try await clientA.prepare(
              .with {
                $0.objectStorageUrls = [url]
                $0.dataset = "ds"
              })
          }
          // The service's own answer, not a stream closed by trailers that overflowed.
          #expect(error?.code == .invalidArgument, "\(error.map { "\($0.code): \($0.message.prefix(200))" } ?? "")")
          #expect((error?.message.utf8.count ?? .max) < 2200)
          #expect(error?.message.contains("(100012 bytes)") == true, "\(error?.message.prefix(300) ?? "")")
        }
      }
    }
  }

  @Test func preparesAManifestAndProcessesItIntoAResponse() async throws {
    try await withStore { root in
      try await withRunningServices(objectRoot: root) { a, b in
        try await withClients(a: a, b: b) { clientA, clientB in
          let urls = ["a", "s3://bucket/one.csv", "file://\(root.path)/bucket/nested/two.bin"]
          let keys = ["a", "bucket/one.csv", "bucket/nested/two.bin"]
          let manifest = try await clientA.prepare(
            .with {
              $0.objectStorageUrls = urls; $0.dataset = "ds"
            })
          #expect(manifest.dataset == "ds")
          #expect(manifest.objects.map(\.url) == urls)
          #expect(manifest.objects.map(\.sizeBytes) == keys.map { UInt64(Self.objects[$0]!.count) })
          #expect(manifest.objects.map(\.sha256) == keys.map { SHA256.hash(data: Self.objects[$0]!).hexString })
          #expect(manifest.objectCount == 3)
          #expect(manifest.totalBytes == UInt64(keys.map { Self.objects[$0]!.count }.reduce(0, +)))

          let response = try await clientB.process(manifest)
          // Independent computation of the dataset digest: SHA-256 over the sorted raw digests.
          let sortedDigests = keys.map { Array(SHA256.hash(data: Self.objects[$0]!)) }
            .sorted { $0.lexicographicallyPrecedes($1) }
          #expect(response.datasetDigest == SHA256.hash(data: sortedDigests.flatMap { $0 }).hexString)
          #expect(response.dataset == "ds")
          #expect(response.objectCount == 3)
          #expect(response.totalBytes == manifest.totalBytes)
          #expect(response.message.contains("'ds'") && response.message.contains(response.datasetDigest))
        }
      }
    }
  }

  @Test func theDigestDoesNotDependOnObjectOrder() async throws {
    try await withStore { root in
      try await withRunningServices(objectRoot: root) { a, b in
        try await withClients(a: a, b: b) { clientA, clientB in
          var digests: [String] = []
          for urls in [["a", "bucket/one.csv"], ["bucket/one.csv", "a"]] {
            let manifest = try await clientA.prepare(
              .with {
                $0.objectStorageUrls = urls; $0.dataset = "d"
              })
            digests.append(try await clientB.process(manifest).datasetDigest)
          }
          #expect(digests[0] == digests[1])
        }
      }
    }
  }

  @Test(arguments: [
    ("missing/object", RPCError.Code.notFound),
    ("s3://bucket/nope.csv", .notFound),
    ("../outside", .invalidArgument),
    ("s3://bucket/../../outside", .invalidArgument),
    ("ftp://host/a", .invalidArgument),
  ])
  func refusesBadURLsWithTheirCodeAndTheURL(url: String, code: RPCError.Code) async throws {
    try await withStore { root in
      try await withRunningServices(objectRoot: root) { a, b in
        try await withClients(a: a, b: b) { clientA, _ in
          let error = await #expect(throws: RPCError.self) {
            try await clientA.prepare(
              .with {
                $0.objectStorageUrls = ["a", url]; $0.dataset = "d"
              })
          }
          #expect(error?.code == code)
          #expect(error?.message.contains(url) == true)
        }
      }
    }
  }

  @Test func refusesEmptyParameters() async throws {
    try await withStore { root in
      try await withRunningServices(objectRoot: root) { a, b in
        try await withClients(a: a, b: b) { clientA, _ in
          let noURLs = await #expect(throws: RPCError.self) { try await clientA.prepare(.with { $0.dataset = "d" }) }
          #expect(noURLs?.code == .invalidArgument)
          #expect(noURLs?.message.contains("object_storage_urls") == true)
          let noDataset = await #expect(throws: RPCError.self) {
            try await clientA.prepare(.with { $0.objectStorageUrls = ["a"] })
          }
          #expect(noDataset?.message.contains("dataset") == true)
        }
      }
    }
  }

  @Test func bRejectsInconsistentManifests() async throws {
    try await withStore { root in
      try await withRunningServices(objectRoot: root) { a, b in
        try await withClients(a: a, b: b) { clientA, clientB in
          let good = try await clientA.prepare(
            .with {
              $0.objectStorageUrls = ["a", "bucket/one.csv"]; $0.dataset = "d"
            })
          var wrongCount = good
          wrongCount.objectCount = 5
          var wrongTotal = good
          wrongTotal.totalBytes += 1
          var badDigest = good
          badDigest.objects[1].sha256 = "XYZ"
          var empty = good
          empty.objects = []
          empty.objectCount = 0
          for (manifest, field) in [
            (wrongCount, "object_count"), (wrongTotal, "total_bytes"), (badDigest, "objects[1].sha256"),
            (empty, "objects"),
          ] {
            let error = await #expect(throws: RPCError.self) { try await clientB.process(manifest) }
            #expect(error?.code == .invalidArgument)
            #expect(error?.message.contains("manifest.\(field)") == true, "\(error?.message ?? "")")
          }
        }
      }
    }
  }

  @Test func refusesRequestsAboveTheMaximumSize() async throws {
    try await withStore { root in
      var small = ServiceServer.Configuration()
      small.maxRequestBytes = 1024
      try await withRunningServices(objectRoot: root, a: small, b: small) { a, b in
        try await withClients(a: a, b: b) { clientA, clientB in
          let big = Gps_V1_DataInfo.with {
            $0.dataset = "d"
            $0.objectStorageUrls = Array(repeating: "a", count: 600)
          }
          let error = await #expect(throws: RPCError.self) { try await clientA.prepare(big) }
          #expect(error?.code == .resourceExhausted, "\(String(describing: error))")
          // A request under the limit still works on the same server.
          let manifest = try await clientA.prepare(
            .with {
              $0.objectStorageUrls = ["a"]; $0.dataset = "d"
            })
          #expect(manifest.objectCount == 1)
          var bigManifest = manifest
          bigManifest.dataset = String(repeating: "x", count: 2000)
          let errorB = await #expect(throws: RPCError.self) { try await clientB.process(bigManifest) }
          #expect(errorB?.code == .resourceExhausted)
        }
      }
    }
  }

  @Test func answersHealthChecks() async throws {
    try await withStore { root in
      try await withRunningServices(objectRoot: root) { a, b in
        for (endpoint, service) in [(a, "gps.v1.A"), (b, "gps.v1.B")] {
          try await withGRPCClient(
            transport: .http2NIOPosix(target: endpoint.resolvableTarget, transportSecurity: .plaintext)
          ) { client in
            let health = Grpc_Health_V1_Health.Client(wrapping: client)
            let overall = try await health.check(.with { $0.service = "" })
            let single = try await health.check(.with { $0.service = service })
            #expect(overall.status == .serving)
            #expect(single.status == .serving)
            let error = await #expect(throws: RPCError.self) {
              try await health.check(.with { $0.service = "no.such.Service" })
            }
            #expect(error?.code == .notFound)
          }
        }
      }
    }
  }

  @Test func failRateOneFailsEveryCallWithUnavailableAndZeroNone() async throws {
    try await withStore { root in
      var failing = ServiceServer.Configuration()
      failing.faults = FaultInjectionInterceptor(failRate: 1)
      try await withRunningServices(objectRoot: root, a: failing) { a, b in
        try await withClients(a: a, b: b) { clientA, _ in
          for _ in 0..<3 {
            let error = await #expect(throws: RPCError.self) {
              try await clientA.prepare(
                .with {
                  $0.objectStorageUrls = ["a"]; $0.dataset = "d"
                })
            }
            #expect(error?.code == .unavailable)
          }
        }
        // Health is not subject to fault injection.
        try await withGRPCClient(
          transport: .http2NIOPosix(target: a.resolvableTarget, transportSecurity: .plaintext)
        ) { client in
          let health = try await Grpc_Health_V1_Health.Client(wrapping: client).check(.init())
          #expect(health.status == .serving)
        }
      }
    }
  }

  @Test func failRateUsesTheInjectedRandomSource() async throws {
    // Alternating draws 0.2, 0.8 with rate 0.5: fail, succeed, fail, succeed.
    let draws = Mutex<[Double]>([0.2, 0.8, 0.2, 0.8])
    try await withStore { root in
      var configuration = ServiceServer.Configuration()
      configuration.faults = FaultInjectionInterceptor(failRate: 0.5, random: { draws.withLock { $0.removeFirst() } })
      try await withRunningServices(objectRoot: root, a: configuration) { a, b in
        try await withClients(a: a, b: b) { clientA, _ in
          var outcomes: [Bool] = []
          for _ in 0..<4 {
            do {
              _ = try await clientA.prepare(
                .with {
                  $0.objectStorageUrls = ["a"]; $0.dataset = "d"
                })
              outcomes.append(true)
            } catch let error as RPCError where error.code == .unavailable {
              outcomes.append(false)
            }
          }
          #expect(outcomes == [false, true, false, true])
        }
      }
    }
  }

  @Test func logsEachCallWithItsIdempotencyKey() async throws {
    let logs = CapturedLogs()
    try await withStore { root in
      try await withRunningServices(objectRoot: root, logger: logs.logger()) { a, b in
        try await withServiceClients(a: a, b: b) { clients in
          _ = try await clients.runPipeline(
            .with {
              $0.objectStorageUrls = ["a"]; $0.dataset = "d"
            }, idempotencyKey: "run-42", timeout: .seconds(30))
        }
      }
    }
    let finished = logs.all.filter { $0.message == "call finished" }
    #expect(finished.map { $0.metadata["idempotency_key"] } == ["run-42/prepare", "run-42/process"])
    #expect(finished.map { $0.metadata["method"] } == ["gps.v1.A/Prepare", "gps.v1.B/Process"])
    #expect(finished.allSatisfy { $0.metadata["status"] == "OK" })
  }

  @Test(arguments: [
    (Duration.seconds(30), "30000000u"),
    (.milliseconds(50), "50000000n"),
    (.nanoseconds(1), "1n"),
    (.zero, "0n"),
    (.seconds(1) + .nanoseconds(1), "1000001u"),
    (.seconds(100_000), "100000S"),
    (.seconds(100_000_000), "1666667M"),
    (.seconds(360_000_000_000), "99999999H"),
  ])
  func timeoutsAreSentInGRPCsWireFormatRoundedUp(timeout: Duration, wire: String) {
    #expect(Metadata.grpcTimeoutValue(timeout) == wire)
    var metadata = Metadata()
    metadata.addTimeout(timeout)
    #expect(Array(metadata[stringValues: grpcTimeoutMetadataKey]) == [wire])
  }
}
