import Control
import Foundation
import GPSTesting
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
      var cursor: Int?
      var pages = 0
      var truncated = 0
      repeat {
        let page = RunFilter.list(state, filter: RunFilter(), from: cursor, limit: 100)
        #expect(try (page.serializedBytes() as [UInt8]).count < Self.messageLimit)
        #expect(!page.runs.isEmpty)
        seen += page.runs.count
        truncated += page.runs.filter { $0.parametersTruncatedBytes == UInt64(huge.utf8.count) }.count
        pages += 1
        cursor = page.nextCursor.isEmpty ? nil : Int(page.nextCursor)
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
        history.append(ControlService.historyAnswer(event, sequence: sequence))
        return sequence < 5
      }
      for answer in history {
        #expect(try (answer.serializedBytes() as [UInt8]).count < Self.messageLimit)
        #expect(answer.parametersTruncatedBytes == 0)
      }
    }
  }
}
