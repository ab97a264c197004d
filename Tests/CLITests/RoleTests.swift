import Control
import Flows
import Foundation
import GPSModel
import GPSTestSupport
import GRPCCore
import Queue
import RPC
import SwiftProtobuf
import Testing

/// A tokens file as `gps server start` reads it: one that is not right stops the start with one
/// line; one that others may read is warned about. (What each role may do is tested in-process:
/// RoleAPITests over gRPC, WebRoleTests over HTTP.)
@Suite struct RoleTests {
  @Test(arguments: [
    ("alice 0123456789abcdef-alice\n", "line 1: alice has no roles; write NAME TOKEN ROLE[,ROLE…]"),
    (
      "alice 0123456789abcdef-alice root\n", "line 1: root is not a role; the roles are admin, operator, worker, reader"
    ),
    ("a 0123456789abcdef-same admin\nb 0123456789abcdef-same reader\n", "line 2: b has the token of a"),
  ])
  func aTokensFileThatIsNotRightIsRefusedAtStart(contents: String, expected: String) async throws {
    try await withTemporaryDirectory { root in
      try root.writeFile("tokens", Array(contents.utf8))
      let result = try await GPSProcess.run([
        "server", "start", "--data-dir", root.path + "/data", "--port", "0", "--no-web", "--tokens",
        root.path + "/tokens",
      ])
      #expect(result.status == 1)
      #expect(result.stderr.contains(expected), "\(result.stderr)")
      #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
    }
  }

  @Test func aTokensFileOthersMayReadIsWarnedAbout() async throws {
    try await withTemporaryDirectory { root in
      try root.writeFile("tokens", Array("alice 0123456789abcdef-alice admin\n".utf8))
      chmod(root.path + "/tokens", 0o644)
      let server = try GPSProcess([
        "server", "start", "--data-dir", root.path + "/data", "--port", "0", "--no-web", "--no-scheduler", "--tokens",
        root.path + "/tokens",
      ])
      _ = try await server.listeningAddress()
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0)
      #expect(server.stderr.contains("may be read by others (mode 644); chmod 600 it"), "\(server.stderr)")
    }
  }
}
