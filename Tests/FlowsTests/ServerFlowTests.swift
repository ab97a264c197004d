import Flows
import Foundation
import GPSModel
import GPSTestSupport
import GRPCCore
import RPC
import ReferenceFlow
import Services
import SwiftProtobuf
import Testing

@Suite struct ServerFlowTests {
  /// The README's reference flow is the code: every line of its block appears, in order, in
  /// ServerFlow.swift (indented one level there).
  @Test func theReadmeShowsTheReferenceFlowAsItIs() throws {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent()
    let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
    let source = try String(
      contentsOf: root.appendingPathComponent("Sources/ReferenceFlow/ServerFlow.swift"), encoding: .utf8)
    let marker = "// Sources/ReferenceFlow/ServerFlow.swift"
    let block = try #require(
      readme.components(separatedBy: marker).dropFirst().first?.components(separatedBy: "```").first)
    let lines = block.split(separator: "\n", omittingEmptySubsequences: false).dropFirst().dropLast()
      .map { $0.isEmpty ? "" : "  " + $0 }
    #expect(lines.count > 10)
    let expected = lines.joined(separator: "\n")
    #expect(source.contains(expected), "the README's reference flow differs from ServerFlow.swift")
  }

  @Test func decodesTheSnippetsParametersWithProtoAndJSONNames() throws {
    let proto = try ServerFlow.decodeDataInfo(ServerFlow.sampleDataInfoJSON)
    #expect(proto.objectStorageUrls == ["a"])
    #expect(proto.dataset == "b")
    let camel = try ServerFlow.decodeDataInfo(#"{"objectStorageUrls": ["s3://x/y", "z"], "dataset": "d"}"#)
    #expect(camel.objectStorageUrls == ["s3://x/y", "z"])
  }

  @Test(arguments: [
    (
      #"{"object_storage_url": ["a"], "dataset": "b"}"#,
      "data_info.object_storage_url: unknown field; did you mean object_storage_urls?"
    ),
    (#"{"object_storage_urls": ["a"], "dataset": "b""#, "the JSON ends inside an object"),
    (
      #"{"object_storage_urls": "a", "dataset": "b"}"#,
      #"data_info.object_storage_urls: expected an array of string, got the string "a""#
    ),
    (#"not json"#, "not valid JSON"),
  ])
  func rejectsBadJSONNamingTheField(json: String, expected: String) {
    let error = #expect(throws: FlowsError.self) { try ServerFlow.decodeDataInfo(json) }
    #expect(error?.code == .invalidParameter)
    #expect(error?.message.contains(expected) == true, "\(error?.message ?? "")")
    #expect(error?.message.contains("\n") == false)
  }

  /// The reference pipeline over real services, with the snippet's exact parameters and sample object.
  @Test func theSnippetsParametersFindTheShippedObjectA() async throws {
    let sampleStore = URL(fileURLWithPath: #filePath)
      .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
      .appendingPathComponent("data/objects")
    let dataInfo = try ServerFlow.decodeDataInfo(ServerFlow.sampleDataInfoJSON)
    let response = try await withRunningServices(objectRoot: sampleStore) { a, b in
      try await withServiceClients(a: a, b: b) { clients in
        try await clients.runPipeline(dataInfo, idempotencyKey: "test", timeout: .seconds(30))
      }
    }
    let object = try Data(contentsOf: sampleStore.appendingPathComponent("a"))
    #expect(response.dataset == "b")
    #expect(response.objectCount == 1)
    #expect(response.totalBytes == UInt64(object.count))
    #expect(response.datasetDigest.count == 64)
  }

  @Test func aServiceThatIsDownIsNamedInTheError() async throws {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let down = ServiceAddress(host: "127.0.0.1", port: 1)
    let error = await #expect(throws: PipelineError.self) {
      try await withServiceClients(a: down, b: down) { clients in
        try await clients.runPipeline(
          .with {
            $0.objectStorageUrls = ["a"]; $0.dataset = "b"
          }, idempotencyKey: "k", timeout: .seconds(30))
      }
    }
    #expect(error?.step == "prepare")
    #expect(error?.code == .unavailable)
    #expect(error?.description.contains("127.0.0.1:1") == true)
    // What to run about it is the CLI's to say (CommandLineTests): the library names no command.
    #expect(error?.description.contains("gps server") == false)
  }
}
