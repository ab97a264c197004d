import Foundation
import GPSModel
import GPSTestSupport
import Queue
import Testing

/// Enqueues that must be refused before anything is written: parameters over the limit, and an
/// idempotency key reused for a different request.
@Suite struct EnqueueLimitTests {
  func refusal(_ body: () async throws -> Void) async -> QueueError? {
    do {
      try await body()
      return nil
    } catch let error as QueueError {
      return error
    } catch {
      return nil
    }
  }

  @Test func parametersOverTheLimitAreRefusedNamingTheSizeAndTheLimit() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory) { $0.maxParameterBytes = 1000 }
      let queue = try fixture.open()
      let big = #"{"x":""# + String(repeating: "a", count: 1200) + #""}"#
      let refused = await refusal {
        _ = try await queue.enqueue(EnqueueRequest(deployment: "flow/deploy", flow: "flow", parametersJSON: big))
      }
      #expect(refused?.code == .tooLarge)
      #expect(refused?.message.contains("\(big.utf8.count) bytes") == true, "\(refused?.message ?? "")")
      #expect(refused?.message.contains("limit of 1000 bytes") == true)
      // A stream enqueue is refused the same way.
      #expect(throws: QueueError.self) {
        try queue.submitEnqueue(EnqueueRequest(deployment: "flow/deploy", flow: "flow", parametersJSON: big))
      }
      #expect(queue.durableSequence == 0)
      queue.close()
      #expect(try fixture.replayed().runs.count == 0)
    }
  }

  @Test func theSameKeyWithOtherParametersIsAConflictNamingTheRun() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory)
      let queue = try fixture.open()
      let first = try await queue.enqueue(request(key: "k1"))
      // The same request: the same run, nothing written.
      let again = try await queue.enqueue(request(key: "k1"))
      #expect(again.created == false)
      #expect(again.run.id == first.run.id)
      var other = request(key: "k1")
      other.parametersJSON = #"{"x":2}"#
      let conflict = await refusal { _ = try await queue.enqueue(other) }
      #expect(conflict?.code == .conflict)
      #expect(
        conflict?.message.contains("already belongs to run \(first.run.id)") == true, "\(conflict?.message ?? "")")
      #expect(conflict?.message.contains("other parameters") == true)
      let elsewhere = await refusal { _ = try await queue.enqueue(request("flow/other", key: "k1")) }
      #expect(elsewhere?.code == .conflict)
      #expect(elsewhere?.message.contains("deployment flow/deploy") == true)
      #expect(queue.durableSequence == 1)
      queue.close()
    }
  }

  @Test func aClaimStopsBeforeItsRunsParametersOutgrowTheBudget() async throws {
    try await withTemporaryDirectory { directory in
      let fixture = QueueFixture(directory: directory)
      let queue = try fixture.open()
      let parameters = #"{"x":""# + String(repeating: "a", count: 400) + #""}"#
      for _ in 0..<5 {
        _ = try await queue.enqueue(EnqueueRequest(deployment: "flow/deploy", flow: "flow", parametersJSON: parameters))
      }
      let first = try await queue.claim(scheduler: "s", limit: 10, maxParameterBytes: 1000)
      #expect(first.count == 2)
      // The run left out is still claimable: nothing is lost from the ready set.
      let rest = try await queue.claim(scheduler: "s", limit: 10, maxParameterBytes: 10_000)
      #expect(rest.count == 3)
      // One run bigger than the budget is still claimed, alone.
      for _ in 0..<2 {
        _ = try await queue.enqueue(EnqueueRequest(deployment: "flow/deploy", flow: "flow", parametersJSON: parameters))
      }
      let alone = try await queue.claim(scheduler: "s", limit: 10, maxParameterBytes: 10)
      #expect(alone.count == 1)
      queue.close()
    }
  }
}
