package import Flows
package import GPSModel
package import GRPCCore
import Queue
import SwiftProtobuf

// Reads: the queue's (``QueueReads``, the same over the files when no server runs), and what only
// a live server adds: the workers serving a deployment, and whether it is ready. Reads of runs may
// read the run index's pages (terminal runs live there): they run on the blocking pool. Deployments
// are in memory.
extension Engine {
  // MARK: Runs

  /// The run named by a full id or a unique prefix of at least 8 characters.
  package func run(named text: String) async throws -> Run {
    let reads = reads
    return try await blocking { try reads.run(named: text) }
  }

  /// The run `request` names as the API shows it, marked archived when its first event is in the
  /// archive.
  package func runInfo(_ request: Gps_V1_GetRunRequest) async throws -> Gps_V1_RunInfo {
    let reads = reads
    return try await blocking { try reads.runInfo(request) }
  }

  /// One page of the runs that `request` asks for, newest first, with a cursor for the next.
  package func listRuns(_ request: Gps_V1_ListRunsRequest) async throws -> Gps_V1_ListRunsResponse {
    let reads = reads
    return try await blocking { try reads.listRuns(request) }
  }

  // MARK: Deployments

  /// The newest version of every deployment, with its workers and status.
  package func listDeployments(_ request: Gps_V1_ListDeploymentsRequest) -> Gps_V1_ListDeploymentsResponse {
    var answer = reads.listDeployments(request)
    for index in answer.deployments.indices { addLive(to: &answer.deployments[index]) }
    return answer
  }

  /// A deployment's version (its newest when `request` names none), with its definition.
  package func deployment(_ request: Gps_V1_GetDeploymentRequest) throws(FlowsError) -> Gps_V1_DeploymentInfo {
    var info = try reads.deployment(request)
    addLive(to: &info)
    return info
  }

  /// What the API says of a deployment version: its definition's summary, its workers and status.
  package func info(_ version: DeploymentVersion, withDefinition: Bool) -> Gps_V1_DeploymentInfo {
    var info = reads.info(version, withDefinition: withDefinition)
    addLive(to: &info)
    return info
  }

  /// Whether the deployment of `info` is ready, and which workers serve it.
  private func addLive(to info: inout Gps_V1_DeploymentInfo) {
    info.status = queue.isReady(info.name) ? "READY" : "NOT_READY"
    info.workers = queue.workers(serving: info.name).map { worker in
      .with {
        $0.id = worker.id
        $0.lastSeenMicros = worker.lastSeen.micros
        $0.principal = worker.principal
      }
    }
  }

  /// The principal that owns a deployment: who registered its first version, or who an admin
  /// handed it over to. The server's own registrations (the reference flow, served by any worker)
  /// have none.
  static func owner(of deployment: String, in state: QueueState) -> String? {
    guard let owner = state.owner(of: deployment), owner != ControlServer.selfPrincipal else { return nil }
    return owner
  }
}

extension Engine {
  /// The servers sharing this server's store (`GetCluster`): FAILED_PRECONDITION on a server whose
  /// log is in files, UNAVAILABLE while the store cannot be reached.
  package func clusterInfo() async throws(RPCError) -> Gps_V1_ClusterInfo {
    guard let cluster else {
      throw RPCError(
        code: .failedPrecondition,
        message: "this server keeps its log in files (no --store): it belongs to no cluster")
    }
    do {
      return Gps_V1_ClusterInfo(try await cluster.status(), me: cluster.serverID)
    } catch {
      throw RPCError(code: .unavailable, message: "cannot read the cluster from the store: \(error.message)")
    }
  }
}
