package import Flows
package import Foundation
package import GPSModel
package import GRPCCore
package import Queue
package import RPC
package import SwiftProtobuf
import Synchronization

/// The control API (`gps.v1.Control`) over one ``RunQueue``: what `gps server start` serves.
package final class ControlService: Gps_V1_Control.SimpleServiceProtocol, Sendable {
  /// What every door calls: this service translates the control API's calls into it.
  package let engine: Engine
  package var queue: RunQueue { engine.queue }
  package var catalog: DeploymentCatalog { engine.catalog }
  let stopping = Atomic<Bool>(false)
  /// The longest a `WatchWork` stream stays silent: a remote scheduler also looks this often.
  let idleSignal: Duration

  /// Where sequences are in the log: history reads start at the batch they need.
  let logIndex: LogIndex

  /// Following streams open at once, in all and per principal.
  package let streams: StreamLimits

  /// Who may call, when the server checks tokens: a deployment is handed over only to one of them.
  let tokens: AccessTokens?

  package init(
    engine: Engine, idleSignal: Duration = .seconds(1),
    streams: StreamLimits = StreamLimits(total: 10_000, perPrincipal: 2_500), tokens: AccessTokens? = nil
  ) {
    self.engine = engine
    self.tokens = tokens
    self.idleSignal = idleSignal
    self.streams = streams
    logIndex = LogIndex(directory: engine.queue.directory)
  }

  /// Runs `body` holding a place among the open streams of the caller (RESOURCE_EXHAUSTED
  /// beyond), until it ends or the RPC is cancelled. gRPC tells a handler of a cancelled RPC (the
  /// client went away) through the context, not by cancelling its task: without this, a stream
  /// waiting for the next event would hold its place, its task and its buffers until one came.
  func holdingStreamPlace(
    _ context: ServerContext, _ body: @escaping @Sendable () async throws -> Void
  ) async throws {
    let principal = Principal.current ?? "unknown"
    try streams.acquire(principal)
    defer { streams.release(principal) }
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await body() }
      group.addTask {
        try await context.cancellation.cancelled
        throw CancellationError()
      }
      defer { group.cancelAll() }
      try await group.next()
    }
  }

  /// The signals of open `WatchWork` streams, poked when the server stops.
  let workStreams = Mutex<[ObjectIdentifier: WakeSignal]>([:])

  /// Ends the streams (watch, history, work) so the server can shut down.
  package func stop() {
    stopping.store(true, ordering: .sequentiallyConsistent)
    queue.endDurableWaits()
    for signal in workStreams.withLock({ Array($0.values) }) { signal.signal() }
  }

  package var isStopping: Bool { stopping.load(ordering: .sequentiallyConsistent) }

  // MARK: Runs

  package func enqueue(
    request: Gps_V1_EnqueueRunRequest, context: ServerContext
  ) async throws -> Gps_V1_EnqueueRunResponse {
    let result = try await engine.enqueue(request, by: Principal.caller(context))
    return .with {
      $0.run = Gps_V1_RunInfo(result.run)
      $0.created = result.created
    }
  }

  package func enqueueStream(
    request: RPCAsyncSequence<Gps_V1_EnqueueRunRequest, any Error>, response: RPCWriter<Gps_V1_EnqueueRunResponse>,
    context: ServerContext
  ) async throws {
    // Requests are validated and submitted as they arrive; their answers go back in order, each
    // once its run is durable, so a client's pipelined enqueues share group commits. Answers that
    // are ready together are written together.
    let answers = AnswerQueue()
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask {
        while let batch = await answers.next() {
          var messages: [Gps_V1_EnqueueRunResponse] = []
          for next in batch {
            switch next {
            case .refused(let error):
              messages.append(
                .with {
                  $0.errorCode = error.code.canonicalName
                  $0.errorMessage = error.message
                })
            case .submitted(let result):
              let sequence = result.run.lastSequence
              if self.queue.durableSequence < sequence {
                // Send what is ready before waiting for the disk.
                if !messages.isEmpty { try await response.write(contentsOf: messages) }
                messages = []
                await self.queue.waitUntilDurable(sequence)
                guard self.queue.durableSequence >= sequence else {
                  throw RPCError(
                    code: .unavailable,
                    message:
                      "the queue stopped before run \(result.run.id) was durable; enqueue it again (with an idempotency key)"
                  )
                }
              }
              // Only what a bulk enqueuer needs (not the full RunInfo that Enqueue answers with):
              // every byte here is paid for by each of tens of thousands of answers a second.
              messages.append(
                .with {
                  $0.run = .with {
                    $0.id = result.run.id.description
                    $0.deployment = result.run.deployment
                    $0.state = result.run.state.rawValue
                    $0.firstSequence = result.run.firstSequence
                    $0.lastSequence = result.run.lastSequence
                  }
                  $0.created = result.created
                })
            }
          }
          if !messages.isEmpty { try await response.write(contentsOf: messages) }
        }
      }
      defer { answers.finish() }
      let principal = Principal.caller(context)
      for try await enqueue in request {
        do {
          answers.append(.submitted(try engine.submit(enqueue, by: principal)))
        } catch let error as any RPCErrorConvertible where error.rpcErrorCode != .unavailable {
          answers.append(.refused(RPCError(error)))
        }
      }
      answers.finish()
      try await group.waitForAll()
    }
  }

  /// The answers of one EnqueueStream, in order; the writer takes all that are there at once.
  final class AnswerQueue: Sendable {
    private let state = Mutex<(answers: [StreamAnswer], finished: Bool)>(([], false))
    private let signal = WakeSignal()

    func append(_ answer: StreamAnswer) {
      state.withLock { $0.answers.append(answer) }
      signal.signal()
    }

    func finish() {
      state.withLock { $0.finished = true }
      signal.signal()
    }

    /// Every answer queued so far (waiting for one if there is none), or nil once finished and empty.
    func next() async -> [StreamAnswer]? {
      while true {
        let (batch, finished) = state.withLock { state in
          defer { state.answers = [] }
          return (state.answers, state.finished)
        }
        if !batch.isEmpty { return batch }
        if finished || Task.isCancelled { return nil }
        await signal.wait()
      }
    }
  }

  enum StreamAnswer: Sendable {
    case submitted(EnqueueResult)
    case refused(RPCError)
  }

  package func getRun(request: Gps_V1_GetRunRequest, context: ServerContext) async throws -> Gps_V1_RunInfo {
    var info = Gps_V1_RunInfo(try run(request.runID))
    info.archived = info.firstSequence < queue.logStart
    return info
  }

  package func archiveLog(
    request: Gps_V1_ArchiveLogRequest, context: ServerContext
  ) async throws -> Gps_V1_ArchiveLogResponse {
    let bound: ArchiveBound
    switch request.before {
    case .beforeTimeMicros(let micros): bound = .time(Timestamp(micros: micros))
    case .beforeSequence(let sequence): bound = .sequence(sequence)
    case nil: throw RPCError(code: .invalidArgument, message: "say before which time or sequence to archive")
    }
    // Who archived is who the server authenticated; what the client calls itself is a label beside it.
    let principal = Principal.caller(context)
    let label = request.archivedBy
    do throws(QueueError) {
      try EventLimits.check(name: label, "archived_by", optional: true)
    } catch {
      throw RPCError(code: .invalidArgument, message: error.message)
    }
    let by = label.isEmpty || label == principal ? principal : "\(principal) (as \(label))"
    let report = try queue.archive(before: bound, delete: request.delete, archivedBy: by, dryRun: request.dryRun)
    return Gps_V1_ArchiveLogResponse(report)
  }

  package func handOverDeployment(
    request: Gps_V1_HandOverDeploymentRequest, context: ServerContext
  ) async throws -> Gps_V1_DeploymentInfo {
    if let tokens, !tokens.isEmpty, !tokens.names.contains(request.to) {
      throw RPCError(
        code: .invalidArgument,
        message:
          "no token in the server's tokens file is named \(JSONValue.quoted(String(request.to.prefix(256)))); hand the deployment to one of: \(tokens.names.sorted().joined(separator: ", "))"
      )
    }
    let version = try await engine.handOver(request, by: Principal.caller(context))
    return info(version, withDefinition: false)
  }

  package func listRuns(
    request: Gps_V1_ListRunsRequest, context: ServerContext
  ) async throws -> Gps_V1_ListRunsResponse {
    let (filter, start) = try RunFilter.parse(request)
    return try RunFilter.list(queue, filter: filter, from: start, limit: request.limit)
  }

  package func cancelRun(request: Gps_V1_RunRequest, context: ServerContext) async throws -> Gps_V1_RunInfo {
    Gps_V1_RunInfo(try await engine.cancel(request, by: Principal.caller(context)))
  }

  package func retryRun(request: Gps_V1_RunRequest, context: ServerContext) async throws -> Gps_V1_RunInfo {
    Gps_V1_RunInfo(try await engine.retry(request, by: Principal.caller(context)))
  }

  package func listDeployments(
    request: Gps_V1_ListDeploymentsRequest, context: ServerContext
  ) async throws -> Gps_V1_ListDeploymentsResponse {
    let versions = queue.deployments
    return .with { $0.deployments = versions.map { info($0, withDefinition: request.withDefinitions) } }
  }

  package func getDeployment(
    request: Gps_V1_GetDeploymentRequest, context: ServerContext
  ) async throws -> Gps_V1_DeploymentInfo {
    let found = queue.withState { state in
      (state.deployment(named: request.name, version: request.version), state.deployments.keys.sorted())
    }
    guard let version = found.0 else {
      throw RPCError(DeploymentCatalog.unknown(request.name, version: request.version, known: found.1))
    }
    return info(version, withDefinition: true)
  }

  /// What the API says of a deployment version: its definition's summary, its workers and status.
  func info(_ version: DeploymentVersion, withDefinition: Bool) -> Gps_V1_DeploymentInfo {
    var info = queue.withState { state in
      Gps_V1_DeploymentInfo(version, catalog: catalog, state: state, withDefinition: withDefinition)
    }
    info.status = queue.isReady(version.name) ? "READY" : "NOT_READY"
    info.workers = queue.workers(serving: version.name).map { worker in
      .with {
        $0.id = worker.id
        $0.lastSeenMicros = worker.lastSeen.micros
        $0.principal = worker.principal
      }
    }
    return info
  }

  package func registerDeployments(
    request: Gps_V1_RegisterDeploymentsRequest, context: ServerContext
  ) async throws -> Gps_V1_RegisterDeploymentsResponse {
    guard !request.worker.isEmpty else {
      throw RPCError(code: .invalidArgument, message: "a registration needs the worker's id")
    }
    // A definition whose types are not in its own descriptor set could never validate a run:
    // refused here, where the worker's author sees it, not at the first enqueue.
    for definition in request.definitions {
      do {
        try RegisteredDeployment.check(definition)
      } catch {
        throw RPCError(error)
      }
    }
    let principal = Principal.caller(context)
    try mayServe(request.definitions.map(\.name))
    let versions = try await queue.register(request.definitions, worker: request.worker, by: principal)
    return .with { $0.versions = versions }
  }

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

  // MARK: Remote schedulers

  package func claim(request: Gps_V1_ClaimRequest, context: ServerContext) async throws -> Gps_V1_ClaimResponse {
    guard !isStopping else { return Gps_V1_ClaimResponse() }
    if request.deployments.isEmpty, !Principal.isAdmin {
      throw RPCError(
        code: .permissionDenied,
        message: "a worker names the deployments it claims (only an admin may claim runs of any deployment)")
    }
    try mayServe(request.deployments)
    let claims = try await queue.claim(
      scheduler: request.scheduler, limit: max(1, Int(request.limit)),
      maxParameterBytes: Gps_V1_RunInfo.answerBudget / 2,
      deployments: request.deployments.isEmpty ? nil : Set(request.deployments),
      principal: Principal.caller(context))
    return .with {
      $0.claims = claims.map { claim in
        .with {
          $0.run = Gps_V1_RunInfo(claim.run)
          $0.leaseToken = claim.lease.token
          $0.leaseExpiresMicros = claim.lease.expiresAt.micros
        }
      }
      $0.nextDeadlineMicros = queue.nextDeadline?.micros ?? 0
    }
  }

  package func heartbeat(
    request: Gps_V1_HeartbeatRequest, context: ServerContext
  ) async throws -> Gps_V1_HeartbeatResponse {
    let lease = try lease(request.runID, request.leaseToken)
    let reply = try queue.heartbeat(lease)
    return .with {
      $0.leaseExpiresMicros = reply.expiresAt.micros
      $0.cancelRequested = reply.cancelRequested
    }
  }

  package func heartbeatMany(
    request: Gps_V1_HeartbeatManyRequest, context: ServerContext
  ) async throws -> Gps_V1_HeartbeatManyResponse {
    .with {
      $0.outcomes = request.leases.map { single in
        do throws(RPCError) {
          let lease = try lease(single.runID, single.leaseToken)
          let reply: HeartbeatReply
          do throws(QueueError) {
            reply = try queue.heartbeat(lease)
          } catch {
            throw RPCError(error)
          }
          return .with {
            $0.renewed = .with {
              $0.leaseExpiresMicros = reply.expiresAt.micros
              $0.cancelRequested = reply.cancelRequested
            }
          }
        } catch {
          return .with {
            $0.errorCode = error.code.canonicalName
            $0.errorMessage = error.message
          }
        }
      }
    }
  }

  package func report(request: Gps_V1_ReportRequest, context: ServerContext) async throws -> Gps_V1_RunInfo {
    let lease = try lease(request.runID, request.leaseToken)
    let kinds = request.events.compactMap(\.kind)
    return Gps_V1_RunInfo(try await queue.report(lease, kinds))
  }

  package func watchWork(
    request: Gps_V1_WatchWorkRequest, response: RPCWriter<Gps_V1_WorkSignal>, context: ServerContext
  ) async throws {
    let deployments = Set(request.deployments)
    try mayServe(deployments)
    // Its place comes back within an idle signal of the worker going away: each loop writes.
    let principal = Principal.current ?? "unknown"
    try streams.acquire(principal)
    defer { streams.release(principal) }
    let signal = WakeSignal()
    if !deployments.isEmpty { queue.sawWorker(request.scheduler, serving: deployments, principal: "") }
    queue.notifyWhenWorkArrives(signal)
    queue.notifyOnCancelRequests(signal)
    workStreams.withLock { $0[ObjectIdentifier(signal)] = signal }
    defer {
      queue.stopNotifying(signal)
      workStreams.withLock { $0[ObjectIdentifier(signal)] = nil }
    }
    while !Task.isCancelled, !isStopping {
      try await response.write(Gps_V1_WorkSignal())
      // An open stream is a live worker, even while it has nothing to claim.
      if !deployments.isEmpty { queue.sawWorker(request.scheduler, serving: deployments, principal: "") }
      var wait = idleSignal
      if let deadline = queue.nextDeadline {
        wait = min(wait, max(.milliseconds(1), deadline - SystemClock().now()))
      }
      await signal.wait(timeout: wait)
    }
  }

  // MARK: Helpers

  /// The run named by a full id or a unique prefix of at least 8 characters.
  package func run(_ text: String) throws(RPCError) -> Run { try engine.run(named: text) }

  /// The run with `id`, wherever it is; an index that cannot be read is `unavailable`.
  func lookUp(_ id: RunID) throws(RPCError) -> Run? {
    do throws(QueueError) {
      return try queue.run(id)
    } catch {
      throw RPCError(code: .unavailable, message: "looking up run \(id) failed: \(error.message)")
    }
  }

  func lease(_ runID: String, _ token: UInt64) throws(RPCError) -> LeaseToken {
    guard let id = RunID(runID) else {
      throw RPCError(code: .invalidArgument, message: "'\(runID)' is not a run id")
    }
    // A worker reports and heartbeats only runs of its own deployments, whatever lease it names.
    if let deployment = queue.withState({ $0.runs[id]?.deployment }) { try mayServe([deployment]) }
    return LeaseToken(runID: id, token: token)
  }

  /// The principal that owns a deployment: who registered its first version, or who an admin
  /// handed it over to. The server's own registrations (the reference flow, served by any worker)
  /// have none.
  static func owner(of deployment: String, in state: QueueState) -> String? {
    guard let owner = state.owner(of: deployment), owner != ControlServer.selfPrincipal else { return nil }
    return owner
  }

  /// Refuses (PERMISSION_DENIED) a caller that is not an admin acting for deployments another
  /// principal registered first. Without tokens every caller is an admin.
  func mayServe(_ deployments: some Sequence<String>) throws(RPCError) {
    guard !Principal.isAdmin, let caller = Principal.current else { return }
    let foreign = queue.withState { state in
      deployments.lazy.compactMap { name in
        Self.owner(of: name, in: state).map { (name, $0, state.handOvers[name]?.by) }
      }.first { $0.1 != caller }
    }
    if let (deployment, owner, handedOverBy) = foreign {
      let how = handedOverBy.map { ", to whom \($0) handed it over" } ?? ", who registered it first"
      throw RPCError(
        code: .permissionDenied,
        message:
          "deployment \(deployment) belongs to \(owner)\(how); \(caller) may not serve it (an admin may, and may hand it over with `gps deployment hand-over`)"
      )
    }
  }
}

extension Gps_V1_DeploymentInfo {
  /// A deployment version as the API shows it, from the state alone: NOT_READY and no workers
  /// (only a server sees workers).
  package init(
    _ version: DeploymentVersion, catalog: DeploymentCatalog, state: QueueState, withDefinition: Bool
  ) {
    self.init()
    let definition = version.definition
    let active = state.activeByDeployment[version.name] ?? 0
    let waiting = active - (state.slotsByDeployment[version.name] ?? 0)
    name = definition.name
    flow = definition.flow
    description_p = definition.description_p
    parameterSchemaJson = (try? catalog.deployment(version).parameterSchema.text) ?? "{}"
    tags = definition.tags
    steps = definition.steps.map(\.name)
    self.version = version.version
    registeredAtMicros = version.registeredAt.micros
    registeredBy = version.registeredBy
    owner = ControlService.owner(of: version.name, in: state) ?? ""
    status = "NOT_READY"
    activeRuns = UInt32(clamping: active)
    waitingRuns = UInt32(clamping: waiting)
    if withDefinition { self.definition = definition }
  }
}
