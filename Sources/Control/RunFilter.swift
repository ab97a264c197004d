public import GRPCCore
public import Queue

/// Listing and finding runs in a state: shared by the server and the CLI's read-only paths.
public struct RunFilter: Sendable {
  public var states: Set<RunState> = []
  public var deployment = ""
  public var tag = ""
  public var enqueuedAfter: Timestamp?
  public var enqueuedBefore: Timestamp?

  public init() {}

  /// The filter and the start position (from the cursor) of a list request.
  public static func parse(_ request: Gps_V1_ListRunsRequest) throws(RPCError) -> (RunFilter, Int?) {
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
    var start: Int?
    if !request.cursor.isEmpty {
      guard let position = Int(request.cursor), position >= 0 else {
        throw RPCError(code: .invalidArgument, message: "cursor \(request.cursor) is not one this server gave")
      }
      start = position
    }
    return (filter, start)
  }

  public func matches(_ run: Run) -> Bool {
    if !states.isEmpty, !states.contains(run.state) { return false }
    if !deployment.isEmpty, run.deployment != deployment { return false }
    if !tag.isEmpty, !run.tags.contains(tag) { return false }
    if let enqueuedAfter, run.enqueuedAt < enqueuedAfter { return false }
    if let enqueuedBefore, run.enqueuedAt >= enqueuedBefore { return false }
    return true
  }

  /// Matching runs, newest first, from position `start` (a cursor) on; at most `limit` (0: 100),
  /// and fewer when they would take more than `budget` bytes (the next page then starts at the
  /// cursor): a page never outgrows the transport's message limit. Parameters longer than a
  /// quarter of the budget are cut, with a note in the run.
  public static func list(
    _ state: QueueState, filter: RunFilter, from start: Int?, limit: UInt32,
    budget: Int = Gps_V1_RunInfo.answerBudget
  ) -> Gps_V1_ListRunsResponse {
    let limit = limit == 0 ? 100 : Int(limit)
    var response = Gps_V1_ListRunsResponse()
    let runs = state.runs.values
    var position = min(start ?? runs.count - 1, runs.count - 1)
    var bytes = 0
    let filtered =
      !filter.states.isEmpty || !filter.deployment.isEmpty || !filter.tag.isEmpty
      || filter.enqueuedAfter != nil || filter.enqueuedBefore != nil
    var checkedBlock = -1
    while position >= 0 {
      // A block of runs none of which can match is skipped whole.
      if filtered, position / RunTable.blockSize != checkedBlock {
        checkedBlock = position / RunTable.blockSize
        if !state.runs.block(
          holding: position, mayMatch: filter.states, deployment: filter.deployment, tag: filter.tag,
          after: filter.enqueuedAfter, before: filter.enqueuedBefore)
        {
          position = checkedBlock * RunTable.blockSize - 1
          continue
        }
      }
      let run = runs[position]
      guard filter.matches(run) else {
        position -= 1
        continue
      }
      let info = Gps_V1_RunInfo(run, maxParameterBytes: budget / 4)
      bytes += info.answerSize
      if !response.runs.isEmpty, bytes > budget {
        response.nextCursor = String(position)
        break
      }
      position -= 1
      response.runs.append(info)
      if response.runs.count == limit {
        if position >= 0 { response.nextCursor = String(position) }
        break
      }
    }
    return response
  }

  /// The run named by its id or a unique prefix of at least 8 characters of it.
  public static func find(_ text: String, in state: QueueState) throws(RPCError) -> Run {
    let text = text.lowercased()
    if let id = RunID(text) {
      guard let run = state.runs[id] else {
        throw RPCError(code: .notFound, message: "no run \(text) in this queue")
      }
      return run
    }
    guard text.count >= 8, text.allSatisfy({ $0.isHexDigit || $0 == "-" }) else {
      throw RPCError(
        code: .invalidArgument,
        message:
          "\(text.isEmpty ? "an empty run id" : "'\(text)'") is not a run id; give its UUID or at least its first 8 characters"
      )
    }
    var matches: [Run] = []
    for run in state.runs.values where run.id.description.hasPrefix(text) {
      matches.append(run)
      if matches.count == 2 { break }
    }
    switch matches.count {
    case 0: throw RPCError(code: .notFound, message: "no run starts with \(text)")
    case 1: return matches[0]
    default: throw RPCError(code: .invalidArgument, message: "several runs start with \(text); give more characters")
    }
  }
}
