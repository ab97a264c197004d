import Control
import Flows
import Foundation
import GPSModel
import GPSTestSupport
import Queue
import RPC
import ReferenceFlow
import Services
import SwiftProtobuf
import Testing

/// Tokens and TLS on the control API; the audit identity is who the server authenticated.
@Suite struct AccessTests {
  static let snippet = #"data_info={"object_storage_urls": ["a"], "dataset": "b"}"#

  func enqueuedBy(_ data: String) throws -> [String] {
    var names: [String] = []
    try QueueHistory(directory: data).events { _, event in
      if case .enqueued(let enqueued) = event.kind { names.append(enqueued.enqueuedBy) }
      return true
    }
    return names
  }

  @Test func onlyCallersWithAKnownTokenMayCallAndTheLogNamesThem() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      try root.writeFile(
        "tokens",
        Array("# who may call\nalice 0123456789abcdef-alice operator\nsched 0123456789abcdef-sched worker\n".utf8))
      try root.writeFile("alice.token", Array("0123456789abcdef-alice\n".utf8))
      try root.writeFile("wrong.token", Array("0123456789abcdef-wrong\n".utf8))
      let server = try GPSProcess([
        "server", "start", "--data-dir", data, "--port", "0", "--no-scheduler", "--tokens", root.path + "/tokens",
      ])
      _ = try await server.listeningAddress()

      let missing = try await GPSProcess.run(["flow-run", "ls", "--data-dir", data])
      #expect(missing.status == 1)
      #expect(missing.stderr.contains("refused the call: this server needs a token"), "\(missing.stderr)")
      #expect(missing.stderr.split(separator: "\n").count == 1)
      let wrong = try await GPSProcess.run([
        "flow-run", "ls", "--data-dir", data, "--token-file", root.path + "/wrong.token",
      ])
      #expect(wrong.status == 1)
      #expect(wrong.stderr.contains("the token given is not one this server knows"), "\(wrong.stderr)")
      // A scheduler without a token cannot claim: it stops at once, saying why.
      let scheduler = try await GPSProcess.run(["scheduler", "--data-dir", data])
      #expect(scheduler.status == 1)
      #expect(scheduler.stderr.contains("this server needs a token"), "\(scheduler.stderr)")

      let enqueued = try await GPSProcess.run([
        "enqueue", "server-flow/MyPrefectDeployer", "--param", Self.snippet, "--data-dir", data,
        "--token-file", root.path + "/alice.token",
      ])
      #expect(enqueued.status == 0, "\(enqueued.stderr)")
      #expect(enqueued.stdout.contains("enqueued run"), "\(enqueued.stdout)")
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0)
      // The CLI said it was user@host; the server recorded the token's name.
      #expect(try enqueuedBy(data) == ["alice"])
    }
  }

  @Test func withoutTokensOnLoopbackTheLogNamesTheLocalUser() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      let server = try GPSProcess(["server", "start", "--data-dir", data, "--port", "0", "--no-scheduler"])
      let address = try ServiceAddress(parsing: try await server.listeningAddress(), what: "server")
      // The kernel's socket table is longer than one page (a /proc file reads a page at a time).
      var sockets: [Int32] = []
      defer { for fd in sockets { close(fd) } }
      for _ in 0..<100 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) {
          $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
          }
        }
        listen(fd, 1)
        sockets.append(fd)
      }
      // A client that claims to be someone else is not believed.
      _ = try await withControlClient(address) { control in
        try await control.enqueue(
          .with {
            $0.deployment = "server-flow/MyPrefectDeployer"
            $0.parametersJson = #"{"data_info": {"dataset": "x"}}"#
            $0.enqueuedBy = "mallory@elsewhere"
          })
      }
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0)
      let names = try enqueuedBy(data)
      #expect(names == ["\(NSUserName())@\(ProcessInfo.processInfo.hostName)"], "\(names)")
    }
  }

  @Test func beyondLoopbackWithoutTLSAndTokensTheServerRefuses() async throws {
    try await withTemporaryDirectory { root in
      let result = try await GPSProcess.run([
        "server", "start", "--data-dir", root.path + "/data", "--host", "0.0.0.0", "--port", "0",
      ])
      #expect(result.status == 1)
      #expect(
        result.stderr.contains("binding 0.0.0.0, beyond loopback, needs TLS (--tls-cert and --tls-key) and tokens"),
        "\(result.stderr)")
      #expect(result.stderr.split(separator: "\n").count == 1)
      #expect(!FileManager.default.fileExists(atPath: root.path + "/data/log"))
    }
  }

  @Test func tlsWithASelfSignedCertificateEndToEnd() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      let openssl = Process()
      openssl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
      openssl.arguments = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-keyout", root.path + "/key.pem", "-out", root.path + "/cert.pem",
      ]
      openssl.standardOutput = FileHandle.nullDevice
      openssl.standardError = FileHandle.nullDevice
      try openssl.run()
      openssl.waitUntilExit()
      try #require(openssl.terminationStatus == 0, "openssl could not make a test certificate")
      let server = try GPSProcess([
        "server", "start", "--data-dir", data, "--port", "0", "--no-scheduler", "--tls-cert", root.path + "/cert.pem",
        "--tls-key", root.path + "/key.pem",
      ])
      _ = try await server.listeningAddress()
      let secure = try await GPSProcess.run([
        "enqueue", "server-flow/MyPrefectDeployer", "--param", Self.snippet, "--data-dir", data, "--tls-ca",
        root.path + "/cert.pem",
      ])
      #expect(secure.status == 0, "\(secure.stderr)")
      #expect(secure.stdout.contains("enqueued run"), "\(secure.stdout)")
      #expect(!secure.stdout.contains("no server is running"))
      let list = try await GPSProcess.run([
        "flow-run", "ls", "--data-dir", data, "--tls-ca", root.path + "/cert.pem",
      ])
      #expect(list.status == 0, "\(list.stderr)")
      #expect(list.stdout.contains("Scheduled"))
      // Plaintext against the TLS server: one line, no answer.
      let plain = try await GPSProcess.run([
        "flow-run", "ls", "--server", try await server.listeningAddress(), "--data-dir", data,
      ])
      #expect(plain.status != 0)
      #expect(plain.stderr.hasPrefix("gps: error: "), "\(plain.stderr)")
      #expect(plain.stderr.split(separator: "\n").count == 1, "\(plain.stderr)")
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0)
    }
  }
}
