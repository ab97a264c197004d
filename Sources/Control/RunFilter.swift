package import GPSModel
package import GRPCCore
package import Queue

/// Listing and finding runs in a state: shared by the server and the CLI's read-only paths.
package struct RunFilter: Sendable {
  package var query = RunQuery()

  package var states: Set<RunState> {
    get { query.states }
    set { query.states = newValue }
  }
  package var deployment: String {
    get { query.deployment }
    set { query.deployment = newValue }
  }
  package var tag: String {
    get { query.tag }
    set { query.tag = newValue }
  }
  package var enqueuedAfter: Timestamp? {
    get { query.enqueuedAfter }
    set { query.enqueuedAfter = newValue }
  }
  package var enqueuedBefore: Timestamp? {
    get { query.enqueuedBefore }
    set { query.enqueuedBefore = newValue }
  }

  package init() {}

  /// The filter and the start (from the cursor: the enqueue sequence of the page's first run, at
  /// most) of a list request.
  package static func parse(_ request: Gps_V1_ListRunsRequest) throws(RPCError) -> (RunFilter, UInt64?) {
    var filter = RunFilter()
    for name in request.states {
      guard let state = RunState(name: name) else {
        throw RPCError(
          code: .invalidArgument,
          message: "unknown state \(name); use one of \(RunState.allCases.map(\.rawValue).joined(separator: ", "))")
      }
      filter.states.insert(state)
    }
    filter.deployment = request.deployment
    filter.tag = request.tag
    if request.enqueuedAfterMicros != 0 { filter.enqueuedAfter = Timestamp(micros: request.enqueuedAfterMicros) }
    if request.enqueuedBeforeMicros != 0 { filter.enqueuedBefore = Timestamp(micros: request.enqueuedBeforeMicros) }
    var start: UInt64?
    if !request.cursor.isEmpty {
      guard let sequence = UInt64(request.cursor) else {
        throw RPCError(
          code: .invalidArgument, message: "cursor \(request.cursor.prefix(40)) is not one this server gave")
      }
      start = sequence
    }
    return (filter, start)
  }

  package func matches(_ run: Run) -> Bool { query.matches(run) }

  /// Matching runs of `state` (every run in memory), newest first, from enqueue sequence `start`
  /// (a cursor) down; see ``list(from:limit:budget:page:)``.
  package static func list(
    _ state: QueueState, filter: RunFilter, from start: UInt64?, limit: UInt32,
    budget: Int = Gps_V1_RunInfo.answerBudget
  ) -> Gps_V1_ListRunsResponse {
    list(from: start, limit: limit, budget: budget) { start, limit in
      state.runs(matching: filter.query, upTo: start, limit: limit)
    }
  }

  /// Matching runs of `queue` (a live one or one read from its files), in memory or in its run
  /// index.
  package static func list(
    _ queue: some RunSource, filter: RunFilter, from start: UInt64?, limit: UInt32,
    budget: Int = Gps_V1_RunInfo.answerBudget
  ) throws(RPCError) -> Gps_V1_ListRunsResponse {
    var failure: QueueError?
    let response = list(from: start, limit: limit, budget: budget) { start, limit in
      do throws(QueueError) {
        return try queue.runs(matching: filter.query, upTo: start, limit: limit)
      } catch {
        failure = error
        return RunPage(runs: [], next: nil)
      }
    }
    if let failure { throw RPCError(code: .unavailable, message: "listing runs failed: \(failure.message)") }
    var marked = response
    let logStart = queue.logStart
    for index in marked.runs.indices { marked.runs[index].archived = marked.runs[index].firstSequence < logStart }
    return marked
  }

  /// A page from `page` (runs newest first from a start, at most a number): at most `limit` (0:
  /// 100), and fewer when they would take more than `budget` bytes (the next page then starts at
  /// the cursor): a page never outgrows the transport's message limit. Parameters longer than a
  /// quarter of the budget are cut, with a note in the run.
  static func list(
    from start: UInt64?, limit: UInt32, budget: Int, page: (UInt64?, Int) -> RunPage
  ) -> Gps_V1_ListRunsResponse {
    let limit = limit == 0 ? 100 : Int(limit)
    var response = Gps_V1_ListRunsResponse()
    let found = page(start, limit)
    var bytes = 0
    for run in found.runs {
      let info = Gps_V1_RunInfo(run, maxParameterBytes: budget / 4)
      bytes += info.answerSize
      if !response.runs.isEmpty, bytes > budget {
        response.nextCursor = String(run.firstSequence)
        return response
      }
      response.runs.append(info)
    }
    if let next = found.next { response.nextCursor = String(next) }
    return response
  }

  /// The run named by its id or a unique prefix of at least 8 characters of it, in `queue`.
  package static func find(_ text: String, in queue: some RunSource) throws(RPCError) -> Run {
    try find(text) { id throws(QueueError) in
      try queue.run(id)
    } prefixed: { prefix, limit throws(QueueError) in
      try queue.runs(idPrefix: prefix, limit: limit)
    }
  }

  static func find(
    _ text: String, byID: (RunID) throws(QueueError) -> Run?,
    prefixed: (String, Int) throws(QueueError) -> [Run]
  ) throws(RPCError) -> Run {
    func attempt<T>(_ body: () throws(QueueError) -> T) throws(RPCError) -> T {
      do throws(QueueError) {
        return try body()
      } catch {
        throw RPCError(code: .unavailable, message: "looking up the run failed: \(error.message)")
      }
    }
    let text = text.lowercased()
    if let id = RunID(text) {
      guard let run = try attempt({ () throws(QueueError) in try byID(id) }) else {
        throw RPCError(code: .notFound, message: "no run \(text) in this queue")
      }
      return run
    }
    guard text.count >= 8, text.allSatisfy({ $0.isHexDigit || $0 == "-" }) else {
      throw RPCError(
        code: .invalidArgument,
        message:
          "\(text.isEmpty ? "an empty run id" : "'\(text.prefix(40))'") is not a run id; give its UUID or at least its first 8 characters"
      )
    }
    let matches = try attempt { () throws(QueueError) in try prefixed(text, 2) }
    switch matches.count {
    case 0: throw RPCError(code: .notFound, message: "no run starts with \(text)")
    case 1: return matches[0]
    default: throw RPCError(code: .invalidArgument, message: "several runs start with \(text); give more characters")
    }
  }
}
