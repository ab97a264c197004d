import Foundation
import GPSModel
import GPSTestSupport
import Queue
import SwiftProtobuf
import Testing

/// Deployments registered as events: versions, replay, snapshots, per-deployment claims, workers.
@Suite struct DeploymentRegistrationTests {
  func definition(_ name: String, parameterType: String = "string", limit: UInt32 = 0) -> DeploymentDefinition {
    var definition = DeploymentDefinition()
    definition.name = name
    definition.flow = String(name.split(separator: "/")[0])
    definition.parameters = [
      .with {
        $0.name = "x"
        $0.type = parameterType
        $0.required = true
      }
    ]
    definition.steps = [
      .with {
        $0.name = "only"
        $0.maxAttempts = 1
      }
    ]
    definition.concurrencyLimit = limit
    return definition
  }

  @Test func anUnchangedDefinitionWritesNothingAndAChangedOneIsANewVersion() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory)
      let queue = try fixture.open()
      #expect(
        try await queue.register([definition("a/one"), definition("b/two")], worker: "w1", by: "alice") == [1, 1])
      let written = queue.durableSequence
      #expect(written == 2)
      // The same definitions again: the same versions, nothing in the log.
      #expect(try await queue.register([definition("a/one"), definition("b/two")], worker: "w2", by: "bob") == [1, 1])
      #expect(queue.durableSequence == written)
      // A changed parameter type: version 2 of that one only.
      #expect(
        try await queue.register(
          [definition("a/one", parameterType: "int64"), definition("b/two")], worker: "w1", by: "alice")
          == [2, 1])
      #expect(queue.durableSequence == written + 1)
      let state = queue.state
      #expect(state.deployment(named: "a/one")?.version == 2)
      #expect(state.deployment(named: "a/one", version: 1)?.definition.parameters.first?.type == "string")
      #expect(state.deployment(named: "a/one", version: 1)?.registeredBy == "alice")
      #expect(state.deployment(named: "a/one", version: 3) == nil)
      queue.close()
      // A full replay, and the snapshot written at close, give the same deployments.
      #expect(try fixture.replayed().deployments == state.deployments)
      let reopened = try fixture.open()
      #expect(reopened.startup.snapshotSequence != nil)
      #expect(reopened.state.deployments == state.deployments)
      reopened.close()
    }
  }

  @Test func aHandOverChangesTheOwnerForGoodThroughReplaySnapshotAndIndex() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory) { $0.runIndex = RunIndexOptions() }
      let queue = try fixture.open()
      _ = try await queue.register([definition("a/one")], worker: "w1", by: "alice")
      #expect(queue.state.owner(of: "a/one") == "alice")
      await #expect(throws: QueueError.self) { _ = try await queue.handOver("z/none", to: "bob", by: "root", note: "") }
      await #expect(throws: QueueError.self) {
        _ = try await queue.handOver("a/one", to: "bob\nforged line", by: "root", note: "")
      }
      let before = queue.durableSequence
      let handOver = try await queue.handOver("a/one", to: "bob", by: "root", note: "team change")
      #expect(handOver.sequence == before + 1)
      #expect(queue.durableSequence == before + 1)
      // Handing it to its owner writes nothing.
      _ = try await queue.handOver("a/one", to: "bob", by: "root", note: "again")
      #expect(queue.durableSequence == before + 1)
      // A later registration by the old owner changes the version, not the owner.
      _ = try await queue.register([definition("a/one", parameterType: "int64")], worker: "w1", by: "alice")
      #expect(queue.state.owner(of: "a/one") == "bob")
      try queue.flushIndex()
      let state = queue.state
      queue.close()
      #expect(try fixture.replayed().handOvers == state.handOvers)
      #expect(try QueueReader.fromIndex(directory: directory.path)?.state.owner(of: "a/one") == "bob")
      #expect(QueueState(snapshotPayload: state.snapshotPayload())?.handOvers == state.handOvers)
      let reopened = try fixture.open()
      #expect(reopened.state.handOvers == state.handOvers)
      #expect(reopened.state.handOvers["a/one"]?.by == "root")
      reopened.close()
    }
  }

  @Test func aDefinitionThatIsNotFlowSlashNameIsRefusedBeforeAnythingIsWritten() async throws {
    try await withTemporaryDirectory { directory in
      let queue = try QueueFixture(directory: directory).open()
      defer { queue.close() }
      var bad = definition("a/one")
      bad.name = "one"
      await #expect(throws: QueueError.self) {
        try await queue.register([definition("a/ok"), bad], worker: "w", by: "x")
      }
      var noSteps = definition("a/one")
      noSteps.steps = []
      await #expect(throws: QueueError.self) { try await queue.register([noSteps], worker: "w", by: "x") }
      #expect(queue.durableSequence == 0)
    }
  }

  @Test func aWorkerClaimsOnlyRunsOfTheDeploymentsItServes() async throws {
    try await withTemporaryDirectory { directory in
      let queue = try QueueFixture(directory: directory).open()
      defer { queue.close() }
      let a = try await queue.enqueue(request("a/one")).run.id
      let b = try await queue.enqueue(request("b/two")).run.id
      // A worker of b/two gets b's run though a's is older; one of c/three gets nothing.
      #expect(
        try await queue.claim(scheduler: "wc", limit: 8, maxParameterBytes: .max, deployments: ["c/three"]).isEmpty)
      let claimedB = try await queue.claim(scheduler: "wb", limit: 8, maxParameterBytes: .max, deployments: ["b/two"])
      #expect(claimedB.map(\.run.id) == [b])
      let claimedA = try await queue.claim(scheduler: "wa", limit: 8, maxParameterBytes: .max, deployments: ["a/one"])
      #expect(claimedA.map(\.run.id) == [a])
      // The claims made them known as workers of their deployments, and ready.
      #expect(queue.workers(serving: "b/two").map(\.id) == ["wb"])
      #expect(queue.workers(serving: "a/one").map(\.id) == ["wa"])
      #expect(queue.isReady("a/one") && queue.isReady("c/three") && !queue.isReady("d/none"))
    }
  }

  @Test func aWorkerIsReadyOnlyWhileSeenWithinALease() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory) { $0.leaseDuration = .seconds(30) }
      let queue = try fixture.open()
      defer { queue.close() }
      queue.sawWorker("w", serving: ["a/one"], principal: "alice")
      #expect(queue.isReady("a/one"))
      fixture.clock.advance(by: .seconds(31))
      #expect(!queue.isReady("a/one"))
      #expect(queue.workers(serving: "a/one").first?.principal == "alice")
    }
  }

  @Test func aRegisteredConcurrencyLimitHoldsClaims() async throws {
    try await withTemporaryDirectory { directory in
      let queue = try QueueFixture(directory: directory).open()
      defer { queue.close() }
      _ = try await queue.register([definition("a/one", limit: 1)], worker: "w", by: "x")
      _ = try await queue.enqueue(request("a/one"))
      _ = try await queue.enqueue(request("a/one"))
      #expect(try await queue.claim(scheduler: "w", limit: 8).count == 1)
    }
  }
}
