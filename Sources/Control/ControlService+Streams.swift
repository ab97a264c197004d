import Flows
import Foundation
package import GPSModel
package import GRPCCore
import Queue
import RPC
import SwiftProtobuf
import Synchronization

extension ControlService {
  // MARK: Streams of events

  package func watchRun(
    request: Gps_V1_WatchRunRequest, response: RPCWriter<Gps_V1_HistoryEvent>, context: ServerContext
  ) async throws {
    let run = try run(request.runID)
    try await holdingStreamPlace(context) { [self] in
      try await stream(from: run.firstSequence, run: run.id, follow: true, response: response)
    }
  }

  package func readHistory(
    request: Gps_V1_ReadHistoryRequest, response: RPCWriter<Gps_V1_HistoryEvent>, context: ServerContext
  ) async throws {
    var runID: RunID?
    if !request.runID.isEmpty { runID = try run(request.runID).id }
    let fromTime = request.fromTimeMicros == 0 ? nil : Timestamp(micros: request.fromTimeMicros)
    let read: @Sendable () async throws -> Void = { [self, runID] in
      try await stream(
        from: max(1, request.fromSequence), run: runID, fromTime: fromTime, follow: request.follow,
        limit: Int(request.limit), response: response)
    }
    // Only a stream that follows lasts: a bounded read needs no place.
    if request.follow { try await holdingStreamPlace(context, read) } else { try await read() }
  }

  /// Sends durable events from `sequence` on (only `run`'s, when given); when following, waits for
  /// new ones, and for a run, ends once it is final and all its events were sent. With a `limit`
  /// (0: none), ends after that many.
  ///
  /// The log is read from the batch that holds `sequence` (``LogIndex``), a window at a time, and a
  /// run's events only up to its last: a page of an old run's events reads the bytes around it,
  /// not the log after it.
  func stream(
    from sequence: UInt64, run runID: RunID?, fromTime: Timestamp? = nil, follow: Bool, limit: Int = 0,
    response: RPCWriter<Gps_V1_HistoryEvent>
  ) async throws {
    let reader = LogReader(directory: queue.directory)
    var cursor: LogCursor
    do {
      cursor = try logIndex.cursor(at: sequence)
    } catch {
      throw RPCError(code: .dataLoss, message: "reading the log failed: \(error)")
    }
    let runBytes = runID.map(\.bytes)
    var waiting: [Gps_V1_HistoryEvent] = []
    var sent = 0
    while true {
      try Task.checkCancellation()
      let durable = queue.durableSequence
      // Nothing of the run lies past its last event so far.
      let end = min(durable, try runID.flatMap { id throws(RPCError) in try lookUp(id)?.lastSequence } ?? durable)
      let wanted = limit == 0 ? Int.max : limit - sent
      do {
        if cursor.nextSequence <= end {
          try reader.read(&cursor, window: 1 << 20) { record in
            guard record.sequence <= end, waiting.count < wanted else { return false }
            if let runBytes, !record.mayBelong(toRun: runBytes) { return true }
            let event = try RunEvent(record)
            if let runID, event.run != runID { return true }
            if let fromTime, event.time < fromTime { return true }
            waiting.append(Self.historyAnswer(event, sequence: record.sequence))
            return true
          }
        }
      } catch {
        throw RPCError(code: .dataLoss, message: "reading the log failed: \(error)")
      }
      for event in waiting {
        try await response.write(event)
        sent += 1
      }
      waiting.removeAll()
      if limit != 0, sent >= limit { return }
      // A final run whose every event was read and sent.
      if let runID, let run = try lookUp(runID), run.state.isTerminal, cursor.nextSequence > run.lastSequence {
        return
      }
      // Without following, the history is what was durable when the call came.
      guard follow else { return }
      if isStopping {
        throw RPCError(code: .unavailable, message: "the server is stopping; watch again once it is back")
      }
      // Everything durable was read: wait for the next event of the log.
      let next = durable + 1
      await queue.waitUntilDurable(next)
      if isStopping {
        throw RPCError(code: .unavailable, message: "the server is stopping; watch again once it is back")
      }
      if queue.durableSequence < next, !Task.isCancelled {
        throw RPCError(code: .unavailable, message: "the queue stopped writing; see the server's log")
      }
    }
  }

  /// An event as a history answer, within the message limit: an enqueue whose parameters would
  /// not fit loses its typed copy of them, and then what of the JSON does not fit.
  package static func historyAnswer(_ event: RunEvent, sequence: UInt64) -> Gps_V1_HistoryEvent {
    var answer = Gps_V1_HistoryEvent()
    answer.sequence = sequence
    answer.event = event
    if case .enqueued(var enqueued) = event.kind {
      let json = enqueued.parametersJson.utf8.count
      let typed = enqueued.parameters.reduce(0) { $0 + $1.value.count }
      if json + typed > Gps_V1_RunInfo.answerBudget {
        enqueued.parameters = []
        if json > Gps_V1_RunInfo.answerBudget {
          enqueued.parametersJson = String(
            decoding: enqueued.parametersJson.utf8.prefix(Gps_V1_RunInfo.answerBudget), as: UTF8.self)
          answer.parametersTruncatedBytes = UInt64(json)
        }
        answer.event.kind = .enqueued(enqueued)
      }
    }
    return answer
  }
}
