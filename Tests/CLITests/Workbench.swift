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

/// Services A and B and a data directory, as the four-terminal workflow uses them: real
/// processes, real signals.
final class Workbench: Sendable {
  let root: URL
  let a: GPSProcess
  let b: GPSProcess
  let aAddress: String
  let bAddress: String
  var data: String { root.path + "/data" }

  init(root: URL, bArguments: [String] = []) async throws {
    self.root = root
    try root.writeFile("objects/a", Array("hello".utf8))
    a = try GPSProcess(["server", "a", "--port", "0", "--object-root", root.path + "/objects"])
    b = try GPSProcess(["server", "b", "--port", "0"] + bArguments)
    aAddress = try await a.listeningAddress()
    bAddress = try await b.listeningAddress()
  }

  /// `gps server start` on this data directory, with the embedded scheduler unless `arguments`
  /// say otherwise; returns once it listens.
  func startServer(_ arguments: [String] = []) async throws -> (GPSProcess, String) {
    let server = try GPSProcess(
      ["server", "start", "--data-dir", data, "--port", "0", "--a", aAddress, "--b", bAddress] + arguments)
    return (server, try await server.listeningAddress())
  }

  /// Runs `gps ARGUMENTS --data-dir DATA` to completion.
  func gps(_ arguments: [String], stdin: String? = nil) async throws -> (status: Int32, stdout: String, stderr: String)
  {
    try await GPSProcess.run(arguments + ["--data-dir", data], directory: root, stdin: stdin)
  }

  static let snippet = #"data_info={"object_storage_urls": ["a"], "dataset": "b"}"#

  /// The run id printed by `deployment run` / `enqueue`.
  static func runID(_ stdout: String) -> String? {
    guard let range = stdout.range(of: #"run [0-9a-f-]{36}"#, options: .regularExpression) else { return nil }
    return String(stdout[range].dropFirst(4))
  }

  /// Every event of the log, read-only.
  func history() throws -> [(UInt64, RunEvent)] { try loggedEvents(in: data) }
}
