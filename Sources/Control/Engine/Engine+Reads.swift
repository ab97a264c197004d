package import Flows
package import GPSModel
package import GRPCCore
package import Queue
import SwiftProtobuf

// Reads: runs and deployments as the control API shows them, the same for every door.
extension Engine {
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

  // MARK: Deployments

  /// The newest version of every deployment.
  package func listDeployments(_ request: Gps_V1_ListDeploymentsRequest) -> Gps_V1_ListDeploymentsResponse {
    let versions = queue.deployments
    return .with { $0.deployments = versions.map { info($0, withDefinition: request.withDefinitions) } }
  }

  /// A deployment's version (its newest when `request` names none), with its definition.
  package func deployment(_ request: Gps_V1_GetDeploymentRequest) throws(FlowsError) -> Gps_V1_DeploymentInfo {
    let found = queue.withState { state in
      (state.deployment(named: request.name, version: request.version), state.deployments.keys.sorted())
    }
    guard let version = found.0 else {
      throw DeploymentCatalog.unknown(request.name, version: request.version, known: found.1)
    }
    return info(version, withDefinition: true)
  }

  /// What the API says of a deployment version: its definition's summary, its workers and status.
  package func info(_ version: DeploymentVersion, withDefinition: Bool) -> Gps_V1_DeploymentInfo {
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

  /// The principal that owns a deployment: who registered its first version, or who an admin
  /// handed it over to. The server's own registrations (the reference flow, served by any worker)
  /// have none.
  static func owner(of deployment: String, in state: QueueState) -> String? {
    guard let owner = state.owner(of: deployment), owner != ControlServer.selfPrincipal else { return nil }
    return owner
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
