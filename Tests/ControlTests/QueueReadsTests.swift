import Control
import Flows
import Foundation
import GPSModel
import GPSTestSupport
import GRPCCore
import Queue
import SwiftProtobuf
import Testing

/// The CLI without a server reads through the engine's own reads over the queue's files: the
/// answers are the server's, field for field.
@Suite struct QueueReadsTests {
  let alice = Caller(name: "alice", roles: [.reader, .operator])

  @Test func theFilesAnswerAsTheServerDoes() async throws {
    try await withEngine { engine in
      var ids: [String] = []
      for index in 0..<5 {
        ids.append(
          try await engine.enqueue(enqueueRequest(snippetParameters, key: "k\(index)"), by: alice).run.id.description)
      }
      _ = try await engine.cancel(.with { $0.runID = ids[1] }, by: alice)
      await engine.queue.waitUntilDurable(engine.queue.durableSequence)
      let files = QueueReads(queue: try QueueReader(directory: engine.queue.directory))

      for id in ids {
        let live = try await engine.runInfo(.with { $0.runID = id })
        #expect(try files.runInfo(.with { $0.runID = id }) == live)
        let prefix = String(id.prefix(8))
        #expect(try files.runInfo(.with { $0.runID = prefix }).id == id)
        var server: [Gps_V1_HistoryEvent] = []
        for try await event in try await engine.history(.with { $0.runID = id }, by: alice) { server.append(event) }
        var offline: [Gps_V1_HistoryEvent] = []
        for try await event in try files.history(.with { $0.runID = id }) { offline.append(event) }
        #expect(!offline.isEmpty)
        #expect(offline == server)
      }
      for request in [
        Gps_V1_ListRunsRequest.with { $0.limit = 2 }, .with { $0.states = ["CANCELLED"] }, .with { $0.limit = 100 },
      ] {
        let live = try await engine.listRuns(request)
        #expect(try files.listRuns(request) == live)
      }
      // What only a live server knows (workers, readiness) aside, deployments read the same.
      var live = engine.listDeployments(.with { $0.withDefinitions = true })
      for index in live.deployments.indices {
        live.deployments[index].workers = []
        live.deployments[index].status = "NOT_READY"
      }
      #expect(!live.deployments.isEmpty)
      #expect(files.listDeployments(.with { $0.withDefinitions = true }) == live)
      let name = live.deployments[0].name
      #expect(try files.deployment(.with { $0.name = name }) == live.deployments[0])

      // Errors are the server's too; a history of files cannot follow.
      let missing = #expect(throws: RPCError.self) { try files.runInfo(.with { $0.runID = "00000000" }) }
      let serverMissing = await #expect(throws: RPCError.self) {
        try await engine.runInfo(.with { $0.runID = "00000000" })
      }
      #expect(missing?.code == .notFound)
      #expect(missing?.message == serverMissing?.message)
      #expect(throws: FlowsError.self) { try files.deployment(.with { $0.name = "nope" }) }
      let following = #expect(throws: RPCError.self) { try files.history(.with { $0.follow = true }) }
      #expect(following?.code == .failedPrecondition)
    }
  }
}
