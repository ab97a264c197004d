package import Flows
import Foundation
package import GPSModel
package import GRPCCore
package import Queue
import RPC
import SwiftProtobuf
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
