import Foundation
import GPSModel
import GPSTestSupport
import Queue
import SwiftProtobuf
import Testing

/// The run index: terminal runs leave memory for `DATA/index/runs.db`, a projection of the log
/// that is rebuilt when it is missing, damaged or another log's, and that never hides a loss.
@Suite struct RunIndexTests {
  static func options(_ configure: (inout RunIndexOptions) -> Void = { _ in }) -> QueueOptions {
    var options = QueueOptions()
    options.log.fsync = .none
    options.log.segmentSize = 256 * 1024
    var index = RunIndexOptions()
    configure(&index)
    options.runIndex = index
    return options
  }

  /// Completes `count` runs (enqueue, claim, report) with tags and two deployments, and leaves
  /// `active` Scheduled.
  static func complete(_ count: Int, active: Int = 0, in queue: RunQueue, from start: Int = 0) async throws {
    for index in start..<(start + count) {
      var request = EnqueueRequest(
        deployment: index % 3 == 0 ? "flow/a" : "flow/b", flow: "flow", parametersJSON: #"{"n":\#(index)}"#)
      request.tags = index % 5 == 0 ? ["five"] : []
      request.idempotencyKey = "k\(index)"
      _ = try await queue.enqueue(request)
      let claim = try #require(try await queue.claim(scheduler: "s"))
      let end: RunEvent.OneOf_Kind = index % 7 == 0 ? .failed(.with { $0.reason = "seven" }) : .completed(.init())
      try await queue.report(claim.token, [.started(.init()), end])
    }
    for index in 0..<active {
      _ = try await queue.enqueue(
        EnqueueRequest(deployment: "flow/a", flow: "flow", parametersJSON: #"{"active":\#(index)}"#))
    }
  }

  static func replayed(_ directory: String) throws -> QueueState {
    var state = QueueState()
    try LogReader(directory: directory).read { try state.apply($0) }
    return state
  }

  /// Every page of `query` at `limit` a page equals the replay's matching runs, newest first.
  static func expectListing(_ queue: some RunSource, equals state: QueueState, _ comment: String) throws {
    let queries = [
      RunQuery(), RunQuery(states: [.completed]), RunQuery(states: [.failed, .scheduled]),
      RunQuery(deployment: "flow/a"), RunQuery(states: [.failed], deployment: "flow/b"), RunQuery(tag: "five"),
      RunQuery(states: [.completed], tag: "five"),
    ]
    for query in queries {
      var listed: [Run] = []
      var start: UInt64?
      repeat {
        let page = try queue.runs(matching: query, upTo: start, limit: 97)
        listed += page.runs
        start = page.next
      } while start != nil
      let expected = Array(state.runs.values.filter(query.matches).reversed())
      #expect(listed.count == expected.count, "\(comment): \(query)")
      #expect(listed == expected, "\(comment): \(query)")
    }
  }

  /// Runs stay in memory only while active or not yet indexed: their number does not grow with
  /// the history, and every answer equals a full replay's, before and after a restart.
  @Test func memoryStaysFlatAsTerminalRunsGrowAndAnswersEqualAFullReplay() async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      let options = Self.options { $0.retireBatch = 256 }
      let queue = try RunQueue(directory: path, options: options)
      var inMemory: [Int] = []
      for round in 0..<10 {
        try await Self.complete(1_000, in: queue, from: round * 1_000)
        try queue.flushIndex()
        inMemory.append(queue.withState { $0.runs.count })
      }
      try await Self.complete(0, active: 50, in: queue)
      try queue.flushIndex()
      // Only the 50 active runs, whatever the number of terminal ones.
      #expect(queue.withState { $0.runs.count } == 50)
      #expect(inMemory.allSatisfy { $0 == 0 }, "\(inMemory)")
      #expect(queue.counts.total == 10_050)
      let replayed = try Self.replayed(path)
      try Self.expectListing(queue, equals: replayed, "live")
      for id in replayed.runs.keys.shuffled().prefix(200) {
        #expect(try queue.run(id) == replayed.runs[id])
      }
      #expect(try queue.withState { try $0.run(idempotencyKey: "k17") }?.id == replayed.idempotencyKeys["k17"])
      // A retired run's key still returns it, with no new run.
      var again = EnqueueRequest(deployment: "flow/b", flow: "flow", parametersJSON: #"{"n":17}"#)
      again.idempotencyKey = "k17"
      let result = try await queue.enqueue(again)
      #expect(!result.created && result.run.id == replayed.idempotencyKeys["k17"])
      queue.close()

      // A clean stop leaves the index at the log's end: nothing to replay.
      let reopened = try RunQueue(directory: path, options: options)
      #expect(reopened.startup.replayedEvents == 0)
      #expect(reopened.withState { $0.runs.count } == 50)
      try Self.expectListing(reopened, equals: replayed, "reopened")
      // A retired run retried comes back to memory and to the listing in its place.
      let failed = try #require(replayed.runs.values.first { $0.state == .failed })
      #expect(try await reopened.retry(failed.id, by: "t").state == .scheduled)
      try reopened.flushIndex()
      try Self.expectListing(reopened, equals: try Self.replayed(path), "after a retry")
      reopened.close()
    }
  }

  /// Without a server, the CLI reads the queue from its files: the index's checkpoint and the log
  /// after it (terminal runs, and an indexed run retried), with a full replay's answers and only
  /// the tail and the active runs in memory; without the index, a whole replay with the same.
  @Test func aQueueReadFromItsFilesAnswersAsAFullReplay() async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      let queue = try RunQueue(directory: path, options: Self.options())
      try await Self.complete(2_000, active: 30, in: queue)
      queue.close()
      var withoutIndex = Self.options()
      withoutIndex.runIndex = nil
      let unindexed = try RunQueue(directory: path, options: withoutIndex)
      try await Self.complete(300, active: 10, in: unindexed, from: 2_000)
      let failed = try #require(
        unindexed.withState { state in state.runs.values.first { $0.state == .failed && $0.firstSequence < 100 } })
      _ = try await unindexed.retry(failed.id, by: "t")
      unindexed.close()

      let replayed = try Self.replayed(path)
      let reader = try QueueReader(directory: path)
      #expect(reader.replayedWhole == nil)
      #expect(reader.state.runs.count <= 341, "the tail's 310 runs, the 30 active ones and the retried one")
      #expect(reader.state.counts == replayed.counts)
      try Self.expectListing(reader, equals: replayed, "read from files")
      for id in replayed.runs.keys.shuffled().prefix(300) { #expect(try reader.run(id) == replayed.runs[id]) }
      #expect(try reader.run(failed.id)?.state == .scheduled)
      let prefix = String(failed.id.description.prefix(8))
      #expect(try reader.runs(idPrefix: prefix, limit: 5).map(\.id).contains(failed.id))

      try FileManager.default.removeItem(atPath: path + "/index")
      let whole = try QueueReader(directory: path)
      #expect(whole.replayedWhole != nil)
      try Self.expectListing(whole, equals: replayed, "replayed whole")
    }
  }

  /// A point before the index's checkpoint, read from the files: the answers of a replay to that
  /// point, while memory holds only what the index cannot answer for (runs active then, and runs
  /// that change after it), not every run.
  @Test func aPointBeforeTheIndexCheckpointAnswersAsAReplayInBoundedMemory() async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      let queue = try RunQueue(directory: path, options: Self.options())
      try await Self.complete(3_000, active: 20, in: queue)
      let point = queue.withState { $0.lastSequence }
      // After the point: failed runs from before it retried (two of them run again), an active
      // one cancelled, a known key enqueued again, and more runs.
      let failed = queue.withState { state in state.runs.values.filter { $0.state == .failed }.prefix(12).map(\.id) }
      for id in failed { _ = try await queue.retry(id, by: "t") }
      for _ in 0..<2 {
        let claim = try #require(try await queue.claim(scheduler: "s"))
        try await queue.report(claim.token, [.started(.init()), .completed(.init())])
      }
      let active = queue.withState { state in state.runs.values.first { $0.state == .scheduled }!.id }
      _ = try await queue.cancel(active, by: "t")
      var again = EnqueueRequest(deployment: "flow/a", flow: "flow", parametersJSON: #"{"n":3}"#)
      again.idempotencyKey = "k3"
      _ = try await queue.enqueue(again)
      try await Self.complete(400, in: queue, from: 3_000)
      let later = queue.withState { state in state.runs.values.filter { $0.firstSequence > point }.map(\.id) }
      queue.close()

      for at in [PointInTime.sequence(point), .sequence(point / 3)] {
        let replayed = try QueueHistory(directory: path).state(at: at)
        let reader = try QueueReader(directory: path, at: at, retiringEvery: 500)
        let comment = "at \(at)"
        #expect(reader.replayedWhole == nil, "\(comment)")
        #expect(reader.state.lastSequence == replayed.lastSequence, "\(comment)")
        #expect(reader.state.counts == replayed.counts, "\(comment)")
        // 500 events are at most 125 runs; 20 are active and 12 change later.
        #expect(reader.peakRunsInMemory < 400, "\(comment): \(reader.peakRunsInMemory) of \(replayed.runs.count)")
        #expect(reader.state.runs.count <= 40, "\(comment): \(reader.state.runs.count) runs in memory")
        try Self.expectListing(reader, equals: replayed, comment)
        for run in replayed.runs.values { #expect(try reader.run(run.id) == run, "\(comment)") }
        for id in later.prefix(50) { #expect(try reader.run(id) == nil, "\(comment): not enqueued yet") }
        for id in failed + [later[0]] {
          let found = try reader.runs(idPrefix: id.description, limit: 5)
          #expect(found == replayed.runs[id].map { [$0] } ?? [], "\(comment)")
        }
      }
    }
  }

  /// A reader beside a server: what the server commits to the index after the reader opened it
  /// (runs retried, run again and retired, more runs) changes none of the reader's answers.
  @Test func aReaderKeepsTheIndexItOpenedWhileAServerWrites() async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      let options = Self.options { $0.retireBatch = 16 }
      let queue = try RunQueue(directory: path, options: options)
      try await Self.complete(1_000, active: 5, in: queue)
      let point = queue.withState { $0.lastSequence } / 2
      queue.close()
      let now = try QueueHistory(directory: path).state(at: .sequence(.max))
      let then = try QueueHistory(directory: path).state(at: .sequence(point))
      let readers = [
        (try QueueReader(directory: path, at: .sequence(.max), retiringEvery: 200), now, "now"),
        (try QueueReader(directory: path, at: .sequence(point), retiringEvery: 200), then, "at \(point)"),
      ]

      let server = try RunQueue(directory: path, options: options)
      let failed = then.runs.values.filter { $0.state == .failed }.prefix(20).map(\.id)
      for id in failed { _ = try await server.retry(id, by: "t") }
      while let claim = try await server.claim(scheduler: "s") {
        try await server.report(claim.token, [.started(.init()), .completed(.init())])
      }
      try await Self.complete(300, in: server, from: 1_000)
      try server.flushIndex()
      #expect(try server.run(failed[0])?.state == .completed)

      for (reader, replayed, comment) in readers {
        #expect(reader.replayedWhole == nil)
        try Self.expectListing(reader, equals: replayed, comment)
        for run in replayed.runs.values { #expect(try reader.run(run.id) == run, "\(comment)") }
      }
      server.close()
    }
  }

  /// Deleted, damaged or another log's: the index is rebuilt from the log with the same answers.
  @Test func theIndexIsRebuiltWhenMissingDamagedOrAnotherLogs() async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path + "/a"
      let other = directory.path + "/b"
      for data in [path, other] {
        let queue = try RunQueue(directory: data, options: Self.options())
        try await Self.complete(300, active: 5, in: queue)
        queue.close()
      }
      let replayed = try Self.replayed(path)
      let index = path + "/index/runs.db"
      func reopen(_ comment: String) throws -> String? {
        let queue = try RunQueue(directory: path, options: Self.options())
        defer { queue.close() }
        try Self.expectListing(queue, equals: replayed, comment)
        #expect(queue.counts == replayed.counts, "\(comment)")
        return queue.startup.indexRebuilt
      }
      #expect(try reopen("intact") == nil)

      try FileManager.default.removeItem(atPath: index)
      #expect(try reopen("deleted") == nil)

      // Another directory's index: its checkpoint's hash is not this log's.
      try FileManager.default.removeItem(atPath: index)
      try FileManager.default.copyItem(atPath: other + "/index/runs.db", toPath: index)
      let why = try reopen("another log's")
      #expect(why?.contains("does not match the log") == true, "\(why ?? "not rebuilt")")

      // Garbage over the whole file.
      try Data(repeating: 0x5a, count: 8192).write(to: URL(fileURLWithPath: index))
      #expect(try reopen("damaged") != nil)
    }
  }

  /// The last segment deleted while the index covers it: refused as a loss, never rebuilt into a
  /// shorter history; accepting the loss sets the index aside and rebuilds it from what is left.
  @Test func aDeletedLastSegmentTheIndexCoversIsALossUntilAccepted() async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      var options = Self.options()
      options.log.segmentSize = 4096
      let queue = try RunQueue(directory: path, options: options)
      try await Self.complete(200, in: queue)
      queue.close()
      let segments = try FileManager.default.contentsOfDirectory(atPath: path + "/log").filter {
        $0.hasSuffix(".seg")
      }.sorted()
      try FileManager.default.removeItem(atPath: path + "/log/" + segments.last!)
      let first = UInt64(segments.last!.prefix(20))!

      #expect {
        _ = try RunQueue(directory: path, options: options)
      } throws: { error in
        let error = error as? QueueError
        return error?.code == .dataLost && error?.missing?.lowerBound == first
          && error?.message.contains("the run index covers them") == true
      }
      // Read from its files (the CLI without a server): the same loss, not an answer without it.
      #expect {
        _ = try QueueReader(directory: path)
      } throws: { error in
        (error as? QueueError)?.code == .dataLost && (error as? QueueError)?.missing?.lowerBound == first
      }
      let acceptance = try RunQueue.acceptLoss(directory: path, acceptedBy: "tester")
      #expect(acceptance.losses.first?.setAside.contains("index/lost/runs.db") == true)
      let reopened = try RunQueue(directory: path, options: options)
      try Self.expectListing(reopened, equals: try Self.replayed(path), "after the loss")
      reopened.close()
      #expect(try LogVerifier(directory: path).verify().isIntact)
    }
  }

  /// With an idempotency window, a key returns its run only within it: later, the same key (even
  /// with other parameters) creates a new run, which takes the key over, in memory, in the index and
  /// in a replay.
  @Test(arguments: [false, true])
  func anIdempotencyKeyReturnsItsRunOnlyWithinTheWindow(retired: Bool) async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      let clock = ManualClock()
      var options = Self.options()
      options.idempotencyWindow = .seconds(86_400)
      let queue = try RunQueue(directory: path, options: options, clock: clock)
      try await Self.complete(20, in: queue)
      if retired { try queue.flushIndex() }
      var request = EnqueueRequest(deployment: "flow/b", flow: "flow", parametersJSON: #"{"n":1}"#)
      request.idempotencyKey = "k1"
      let first = try await queue.enqueue(request)
      #expect(!first.created, "within the window the key returns its run")
      let original = first.run

      clock.advance(by: .seconds(86_400))
      request.parametersJSON = #"{"n":"other"}"#
      let renewed = try await queue.enqueue(request)
      #expect(renewed.created && renewed.run.id != original.id)
      let again = try await queue.enqueue(request)
      #expect(!again.created && again.run.id == renewed.run.id)
      #expect(try queue.run(original.id) == original, "the old run stays")
      if retired { try queue.flushIndex() }
      queue.close()

      let replayed = try Self.replayed(path)
      #expect(replayed.idempotencyKeys["k1"] == renewed.run.id)
      let reopened = try RunQueue(directory: path, options: options, clock: clock)
      #expect(try reopened.withState { try $0.run(idempotencyKey: "k1") }?.id == renewed.run.id)
      try Self.expectListing(reopened, equals: replayed, "renewed")
      reopened.close()
    }
  }
}
