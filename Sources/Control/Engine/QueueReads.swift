package import Flows
package import GPSModel
package import GRPCCore
package import Queue
import SwiftProtobuf

/// Reads of runs, deployments and the history, answered by the same code from any queue: the
/// engine's over the server's live queue, and the `gps` CLI's over the queue's files when no
/// server runs (a ``QueueReader``, without the lock). What only a live server knows (which workers
/// serve a deployment, whether it is ready, histories that follow) the ``Engine`` adds.
package struct QueueReads: Sendable {
  package let queue: any ReadableQueue
  /// Validators of the registered deployment versions: a deployment's parameter schema.
  package let catalog: DeploymentCatalog
  /// Where sequences are in the log: history reads start at the batch they need.
  let logIndex: LogIndex

  package init(queue: any ReadableQueue, catalog: DeploymentCatalog = DeploymentCatalog()) {
    self.queue = queue
    self.catalog = catalog
    logIndex = LogIndex(directory: queue.directory)
  }

  // MARK: Runs

  /// The run named by a full id or a unique prefix of at least 8 characters.
  package func run(named text: String) throws(RPCError) -> Run {
    try RunFilter.find(text, in: queue)
  }

  /// The run `request` names as the API shows it, marked archived when its first event is in the
  /// archive.
  package func runInfo(_ request: Gps_V1_GetRunRequest) throws(RPCError) -> Gps_V1_RunInfo {
    var info = Gps_V1_RunInfo(try run(named: request.runID))
    info.archived = info.firstSequence < queue.logStart
    return info
  }

  /// One page of the runs that `request` asks for, newest first, with a cursor for the next.
  package func listRuns(_ request: Gps_V1_ListRunsRequest) throws(RPCError) -> Gps_V1_ListRunsResponse {
    let (filter, start) = try RunFilter.parse(request)
    return try RunFilter.list(queue, filter: filter, from: start, limit: request.limit)
  }

  /// The run with `id`, wherever it is; an index that cannot be read is `unavailable`.
  func lookUp(_ id: RunID) throws(RPCError) -> Run? {
    do throws(QueueError) {
      return try queue.run(id)
    } catch {
      throw RPCError(code: .unavailable, message: "looking up run \(id) failed: \(error.message)")
    }
  }

  /// The log's events that `request` asks for, up to where the log is now: from a sequence (and
  /// a time) on, one run's or all, at most `limit`. Following needs the live queue
  /// (``Engine/history(_:by:)``).
  package func history(_ request: Gps_V1_ReadHistoryRequest) throws(RPCError) -> HistoryEvents {
    guard !request.follow else {
      throw RPCError(code: .failedPrecondition, message: "only a running server's history follows; start the server")
    }
    return try history(request, following: nil)
  }

  func history(_ request: Gps_V1_ReadHistoryRequest, following: (Engine, StreamPlace)?) throws(RPCError)
    -> HistoryEvents
  {
    var runID: RunID?
    if !request.runID.isEmpty { runID = try run(named: request.runID).id }
    return HistoryEvents(
      reads: self, start: max(1, request.fromSequence), run: runID,
      fromTime: request.fromTimeMicros == 0 ? nil : Timestamp(micros: request.fromTimeMicros),
      following: following, limit: Int(request.limit))
  }

  // MARK: Deployments

  /// The newest version of every deployment, as the state records them.
  package func listDeployments(_ request: Gps_V1_ListDeploymentsRequest) -> Gps_V1_ListDeploymentsResponse {
    let infos = queue.withState { state in
      state.deployments.keys.sorted().compactMap { state.deployment(named: $0) }.map {
        Gps_V1_DeploymentInfo($0, catalog: catalog, state: state, withDefinition: request.withDefinitions)
      }
    }
    return .with { $0.deployments = infos }
  }

  /// A deployment's version (its newest when `request` names none), with its definition.
  package func deployment(_ request: Gps_V1_GetDeploymentRequest) throws(FlowsError) -> Gps_V1_DeploymentInfo {
    try queue.withState { state throws(FlowsError) in
      guard let version = state.deployment(named: request.name, version: request.version) else {
        throw DeploymentCatalog.unknown(request.name, version: request.version, known: state.deployments.keys.sorted())
      }
      return Gps_V1_DeploymentInfo(version, catalog: catalog, state: state, withDefinition: true)
    }
  }

  /// What the state says of a deployment version.
  func info(_ version: DeploymentVersion, withDefinition: Bool) -> Gps_V1_DeploymentInfo {
    queue.withState { state in
      Gps_V1_DeploymentInfo(version, catalog: catalog, state: state, withDefinition: withDefinition)
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
    owner = Engine.owner(of: version.name, in: state) ?? ""
    status = "NOT_READY"
    activeRuns = UInt32(clamping: active)
    waitingRuns = UInt32(clamping: waiting)
    if withDefinition { self.definition = definition }
  }
}
