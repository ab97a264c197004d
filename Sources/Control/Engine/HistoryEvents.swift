package import GPSModel
package import GRPCCore
import Queue
import Synchronization

extension Engine {
  /// The log's durable events that `request` asks for: from a sequence (and a time) on, one
  /// run's or all, at most `limit`; when following, new ones as they become durable. A following
  /// history holds one of the caller's stream places (RESOURCE_EXHAUSTED beyond its share) until
  /// it and its iterators are gone.
  package func history(_ request: Gps_V1_ReadHistoryRequest, by caller: Caller) async throws -> HistoryEvents {
    // Only a history that follows lasts: a bounded read needs no place.
    let following = request.follow ? (self, try StreamPlace(in: streams, for: caller.name)) : nil
    let reads = reads
    return try await blocking { try reads.history(request, following: following) }
  }

  /// A run's events from its first on, as they become durable, until it is final and all of them
  /// were read.
  package func watch(_ request: Gps_V1_WatchRunRequest, by caller: Caller) async throws -> HistoryEvents {
    let run = try await run(named: request.runID)
    return HistoryEvents(
      reads: reads, start: run.firstSequence, run: run.id, fromTime: nil,
      following: (self, try StreamPlace(in: streams, for: caller.name)), limit: 0)
  }
}

/// A place among the open streams, taken when made and given back when the last reference goes.
final class StreamPlace: Sendable {
  let streams: StreamLimits
  let principal: String

  init(in streams: StreamLimits, for principal: String) throws(RPCError) {
    // Taken before the object is whole: a refused place never runs the deinit that gives it back.
    try streams.acquire(principal)
    self.streams = streams
    self.principal = principal
  }

  deinit { streams.release(principal) }
}

/// Durable events of the log, as history answers: from ``Engine/history(_:by:)``,
/// ``Engine/watch(_:by:)`` and (over a queue's files) ``QueueReads/history(_:)``.
///
/// The log is read from the batch that holds the first sequence (``LogIndex``), a page at a time
/// on NIO's blocking pool (never on the concurrency pool's threads), and a run's events only up
/// to its last: a page of an old run's events reads the bytes around it, not the log after it.
/// Without following, the history is what was durable when it was asked for.
package struct HistoryEvents: AsyncSequence, Sendable {
  package typealias Element = Gps_V1_HistoryEvent

  /// Events read from the log at once, at most: what an iterator holds in memory.
  static let page = 1024

  let reads: QueueReads
  let start: UInt64
  let run: RunID?
  let fromTime: Timestamp?
  /// A history that follows waits on the live engine's queue, holding one of its stream places.
  let following: (engine: Engine, place: StreamPlace)?
  /// 0: no limit.
  let limit: Int
  /// Where a history that does not follow ends.
  let end: UInt64

  init(
    reads: QueueReads, start: UInt64, run: RunID?, fromTime: Timestamp?, following: (Engine, StreamPlace)?,
    limit: Int
  ) {
    self.reads = reads
    self.start = start
    self.run = run
    self.fromTime = fromTime
    self.following = following
    self.limit = limit
    end = reads.queue.durableSequence
  }

  package func makeAsyncIterator() -> Iterator { Iterator(events: self) }

  package struct Iterator: AsyncIteratorProtocol {
    let events: HistoryEvents
    var cursor: LogCursor?
    var buffer: [Element] = []
    var index = 0
    var sent = 0
    var done = false

    package mutating func next() async throws -> Element? {
      while true {
        if index < buffer.count {
          let event = buffer[index]
          index += 1
          sent += 1
          return event
        }
        buffer.removeAll(keepingCapacity: true)
        index = 0
        if done || (events.limit != 0 && sent >= events.limit) { return nil }
        try await refill()
      }
    }

    /// Reads the next page; with nothing left to read, ends the history, or (following) waits
    /// until the next event is durable.
    mutating func refill() async throws {
      try Task.checkCancellation()
      let durable = events.following == nil ? events.end : events.reads.queue.durableSequence
      let wanted = Swift.min(HistoryEvents.page, events.limit == 0 ? .max : events.limit - sent)
      guard let (run, page, after) = try await read(from: cursor, durable: durable, wanted: wanted) else {
        throw CancellationError()
      }
      buffer = page
      cursor = after
      if !page.isEmpty { return }
      // A final run whose every event was read.
      if let run, run.state.isTerminal, after.nextSequence > run.lastSequence {
        done = true
        return
      }
      guard let engine = events.following?.engine else {
        done = true
        return
      }
      if engine.isStopping {
        throw RPCError(code: .unavailable, message: "the server is stopping; watch again once it is back")
      }
      // Everything durable was read: wait for the next event of the log.
      let next = durable + 1
      await engine.queue.waitUntilDurable(next)
      if engine.isStopping {
        throw RPCError(code: .unavailable, message: "the server is stopping; watch again once it is back")
      }
      if engine.queue.durableSequence < next, !Task.isCancelled {
        throw RPCError(code: .unavailable, message: "the queue stopped writing; see the server's log")
      }
    }

    /// In one trip to the blocking pool: the run of a run's history looked up (a retired run's
    /// row is read from the run index), then up to `wanted` answers from `cursor` (the first
    /// sequence's batch, when nil) through `durable` and no further than the run's last event so
    /// far, and the cursor after them; nil when the caller was cancelled while it waited.
    func read(from cursor: LogCursor?, durable: UInt64, wanted: Int) async throws(RPCError) -> (
      Run?, [Element], LogCursor
    )? {
      let events = self.events
      let outcome = await onBlockingPool { () -> Result<(Run?, [Element], LogCursor), any Error> in
        Result {
          let run = try events.run.flatMap { id throws(RPCError) in try events.reads.lookUp(id) }
          // Nothing of the run lies past its last event so far.
          let end = Swift.min(durable, run?.lastSequence ?? durable)
          if let cursor, cursor.nextSequence > end { return (run, [], cursor) }
          var cursor = try cursor ?? events.reads.logIndex.cursor(at: events.start)
          let runBytes = events.run.map(\.bytes)
          var page: [Element] = []
          try LogReader(directory: events.reads.queue.directory).read(&cursor, window: 1 << 20) { record in
            guard record.sequence <= end, page.count < wanted else { return false }
            if let runBytes, !record.mayBelong(toRun: runBytes) { return true }
            let event = try RunEvent(record)
            if let runID = events.run, event.run != runID { return true }
            if let fromTime = events.fromTime, event.time < fromTime { return true }
            page.append(HistoryEvents.answer(event, sequence: record.sequence))
            return true
          }
          return (run, page, cursor)
        }
      }
      switch outcome {
      case nil: return nil
      case .success(let read)?: return read
      case .failure(let error as RPCError)?: throw error
      case .failure(let error)?: throw RPCError(code: .dataLoss, message: "reading the log failed: \(error)")
      }
    }
  }

  /// An event as a history answer, within the message limit: an enqueue whose parameters would
  /// not fit loses its typed copy of them, and then what of the JSON does not fit.
  package static func answer(_ event: RunEvent, sequence: UInt64) -> Gps_V1_HistoryEvent {
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
