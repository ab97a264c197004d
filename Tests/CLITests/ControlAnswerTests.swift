import Control
import Foundation
import GPSModel
import GPSTestSupport
import Queue
import SwiftProtobuf
import Testing

/// No answer of the control API outgrows gRPC's 4 MiB message limit, even for runs stored with
/// parameters larger than today's limit allows.
@Suite struct ControlAnswerTests {
  static let messageLimit = 4 << 20

  @Test func pagesGetAndHistoryAnswersStayWithinTheMessageLimit() async throws {
    try await withTemporaryDirectory { directory in
      var options = QueueOptions()
      options.log.fsync = .none
      options.maxParameterBytes = 8 << 20
      let queue = try RunQueue(directory: directory.path, options: options)
      // Five runs of 3 MB, as an older GPS let in, and twenty small ones.
      let huge = #"{"x":""# + String(repeating: "h", count: 3_000_000) + #""}"#
      var request = EnqueueRequest(deployment: "flow/deploy", flow: "flow", parametersJSON: huge)
      request.parameters = [RunParameter(name: "x", type: "test.X", value: Array(repeating: 7, count: 3_000_000))]
      for _ in 0..<5 { _ = try await queue.enqueue(request) }
      for index in 0..<20 {
        _ = try await queue.enqueue(
          EnqueueRequest(deployment: "flow/deploy", flow: "flow", parametersJSON: #"{"x":\#(index)}"#))
      }
      let state = queue.state
      queue.close()

      var seen = 0
      var cursor: UInt64?
      var pages = 0
      var truncated = 0
      repeat {
        let page = RunFilter.list(state, filter: RunFilter(), from: cursor, limit: 100)
        #expect(try (page.serializedBytes() as [UInt8]).count < Self.messageLimit)
        #expect(!page.runs.isEmpty)
        seen += page.runs.count
        truncated += page.runs.filter { $0.parametersTruncatedBytes == UInt64(huge.utf8.count) }.count
        pages += 1
        cursor = page.nextCursor.isEmpty ? nil : UInt64(page.nextCursor)
      } while cursor != nil
      #expect(seen == 25)
      #expect(pages > 1)
      // In a page, each huge run's parameters are cut, with their size noted.
      #expect(truncated == 5)

      let hugeRun = state.runs.values.first!
      let info = Gps_V1_RunInfo(hugeRun)
      #expect(try (info.serializedBytes() as [UInt8]).count < Self.messageLimit)
      // GetRun shows 3 MB whole: within the limit once the typed copy is left out.
      #expect(info.parametersTruncatedBytes == 0)
      #expect(info.parameters.isEmpty)

      var history: [Gps_V1_HistoryEvent] = []
      try QueueHistory(directory: directory.path).events { sequence, event in
        history.append(HistoryEvents.answer(event, sequence: sequence))
        return sequence < 5
      }
      for answer in history {
        #expect(try (answer.serializedBytes() as [UInt8]).count < Self.messageLimit)
        #expect(answer.parametersTruncatedBytes == 0)
      }
    }
  }
}

/// Listing skips blocks of runs that cannot match; the pages must still be exactly a scan's.
@Suite struct RunListingTests {
  @Test func filteredPagesEqualANaiveScanLiveAfterReplayAndFromASnapshot() async throws {
    try await withTemporaryDirectory { directory in
      var options = QueueOptions()
      options.log.fsync = .none
      let clock = ManualClock()
      let queue = try RunQueue(directory: directory.path, options: options, clock: clock)
      // 5,000 runs over five blocks: deployment "rare/one" only in the third block, tag "odd" on a
      // few runs, and runs moved to other states (claimed, cancelled) along the way.
      var random = SplitMix(state: 20_261_201)
      for index in 0..<5_000 {
        let deployment = (2_100..<2_110).contains(index) ? "rare/one" : "flow/d\(random.next() % 3)"
        var request = EnqueueRequest(deployment: deployment, flow: "flow", parametersJSON: #"{"i":\#(index)}"#)
        if random.next() % 97 == 0 { request.tags = ["odd"] }
        let run = try await queue.enqueue(request).run
        clock.advance(by: .milliseconds(1))
        if random.next() % 50 == 0 { try await queue.cancel(run.id, by: "test") }
      }
      for _ in 0..<30 { _ = try await queue.claim(scheduler: "s") }
      let live = queue.state
      queue.close()
      // From the snapshot the close wrote, and from a full replay of the log.
      let reopened = try RunQueue(directory: directory.path, options: options, clock: clock)
      let fromSnapshot = reopened.state
      reopened.close()
      var replayed = QueueState()
      try LogReader(directory: directory.path).read { try replayed.apply($0) }

      let start = live.runs.values[0].enqueuedAt
      var filters: [RunFilter] = []
      for states in [[], [RunState.cancelled], [.pending], [.failed], [.scheduled, .pending]] {
        for deployment in ["", "rare/one", "flow/d1", "none/such"] {
          for tag in ["", "odd"] {
            var filter = RunFilter()
            filter.states = Set(states)
            filter.deployment = deployment
            filter.tag = tag
            filters.append(filter)
          }
        }
      }
      var timed = RunFilter()
      timed.enqueuedAfter = start + .milliseconds(1_500)
      timed.enqueuedBefore = start + .milliseconds(3_100)
      filters.append(timed)
      for filter in filters {
        let expected = live.runs.values.reversed().filter(filter.matches).map(\.id.description)
        for state in [live, fromSnapshot, replayed] {
          var listed: [String] = []
          var cursor: UInt64?
          repeat {
            let page = RunFilter.list(state, filter: filter, from: cursor, limit: 37)
            listed += page.runs.map(\.id)
            cursor = page.nextCursor.isEmpty ? nil : UInt64(page.nextCursor)
          } while cursor != nil
          #expect(listed == expected, "\(filter.states) \(filter.deployment) \(filter.tag)")
        }
      }
    }
  }
}
