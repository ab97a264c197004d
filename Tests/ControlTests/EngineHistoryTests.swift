import Control
import Flows
import Foundation
import GPSModel
import GPSTestSupport
import GRPCCore
import Queue
import ReferenceFlow
import SwiftProtobuf
import Testing

/// Histories and watches are the engine's `AsyncSequence`s, the same for the gRPC and the web door.
@Suite struct EngineHistoryTests {
  let alice = Caller(name: "alice", roles: [.reader, .operator])
  let bob = Caller(name: "bob", roles: [.reader])

  /// A history longer than a page is read a page at a time, in order, without a gap; one that does
  /// not follow ends at what was durable when it was asked for.
  @Test func aHistoryReadsPageAfterPageAndEndsWhereTheLogWasWhenAsked() async throws {
    try await withEngine { engine in
      var last: UInt64 = 0
      for index in 0..<2_500 {
        last = try engine.submit(enqueueRequest(snippetParameters, key: "k\(index)"), by: alice).run.lastSequence
      }
      await engine.queue.waitUntilDurable(last)
      let end = engine.queue.durableSequence
      #expect(end > 2 * 1024)
      let history = try await engine.history(.with { $0.fromSequence = 1 }, by: alice)
      _ = try await engine.enqueue(enqueueRequest(snippetParameters, key: "later"), by: alice)
      var sequences: [UInt64] = []
      for try await event in history { sequences.append(event.sequence) }
      #expect(sequences == Array(1...end))
      // A limit and a start anywhere.
      var limited: [UInt64] = []
      for try await event in try await engine.history(
        .with {
          $0.fromSequence = 1000
          $0.limit = 1500
        }, by: alice)
      {
        limited.append(event.sequence)
      }
      #expect(limited == Array(1000..<2500))
    }
  }

  /// A following history holds one of its caller's stream places for as long as it (or an
  /// iterator of it) exists; a bounded read needs none.
  @Test func aFollowingHistoryHoldsItsCallersPlaceUntilItIsGone() async throws {
    try await withEngine(streams: StreamLimits(total: 2, perPrincipal: 1)) { engine in
      var following: HistoryEvents? = try await engine.history(.with { $0.follow = true }, by: alice)
      let refused = await #expect(throws: RPCError.self) {
        try await engine.history(.with { $0.follow = true }, by: alice)
      }
      #expect(refused?.code == .resourceExhausted)
      #expect(engine.streams.count == 1)
      // Another caller has a share of its own; a bounded read takes no place.
      _ = try await engine.history(.with { $0.follow = true }, by: bob)
      for try await _ in try await engine.history(.with { $0.limit = 1 }, by: alice) {}
      #expect(engine.streams.count == 1)
      // Following: the next event comes once it is durable; the place is back once the
      // sequence and its iterator are gone.
      let start = engine.queue.durableSequence + 1
      let first = Task { [following] in
        var iterator = following!.makeAsyncIterator()
        while let event = try await iterator.next() {
          if event.sequence >= start { return event.sequence }
        }
        return 0
      }
      following = nil
      let run = try await engine.enqueue(enqueueRequest(snippetParameters), by: alice).run
      #expect(try await first.value == run.firstSequence)
      // The task's captures go when its job ends, which may be just after its value is read.
      try await eventually("the place back") { engine.streams.count == 0 }
      _ = try await engine.history(.with { $0.follow = true }, by: alice)
    }
  }

  /// A watch sends the run's events and ends once the run is final and all were sent.
  @Test func aWatchEndsWithItsRunsLastEvent() async throws {
    try await withEngine { engine in
      let run = try await engine.enqueue(enqueueRequest(snippetParameters), by: alice).run
      _ = try await engine.enqueue(enqueueRequest(snippetParameters, key: "other"), by: alice)
      let cancelled = try await engine.cancel(
        .with {
          $0.runID = run.id.description
          $0.reason = "done"
        }, by: alice)
      var kinds: [String] = []
      for try await event in try await engine.watch(.with { $0.runID = String(run.id.description.prefix(8)) }, by: bob)
      {
        #expect(event.event.run == run.id)
        kinds.append(event.event.kind.map { "\($0)".prefix { $0 != "(" }.description } ?? "")
      }
      #expect(kinds == ["enqueued", "cancelled"])
      #expect(cancelled.lastSequence > run.firstSequence)
      #expect(engine.streams.count == 0)
    }
  }
}
