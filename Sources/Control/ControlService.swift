package import GPSModel
package import GRPCCore
package import Queue
import SwiftProtobuf

/// The control API (`gps.v1.Control`) over one ``Engine``: what `gps server start` serves. Each
/// call hands its request and the caller the access interceptor authenticated to the engine, and
/// its answer (or error: the domain's errors are `RPCErrorConvertible`) back to the client.
package final class ControlService: Gps_V1_Control.SimpleServiceProtocol, Sendable {
  /// What every door calls.
  package let engine: Engine
  package var queue: RunQueue { engine.queue }

  package init(engine: Engine) {
    self.engine = engine
  }

  /// Ends the streams (watch, history, work) so the server can shut down.
  package func stop() { engine.stop() }

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

  package func getRun(request: Gps_V1_GetRunRequest, context: ServerContext) async throws -> Gps_V1_RunInfo {
    try await engine.runInfo(request)
  }

  package func listRuns(
    request: Gps_V1_ListRunsRequest, context: ServerContext
  ) async throws -> Gps_V1_ListRunsResponse {
    try await engine.listRuns(request)
  }

  package func cancelRun(request: Gps_V1_RunRequest, context: ServerContext) async throws -> Gps_V1_RunInfo {
    Gps_V1_RunInfo(try await engine.cancel(request, by: Principal.caller(context)))
  }

  package func retryRun(request: Gps_V1_RunRequest, context: ServerContext) async throws -> Gps_V1_RunInfo {
    Gps_V1_RunInfo(try await engine.retry(request, by: Principal.caller(context)))
  }

  package func archiveLog(
    request: Gps_V1_ArchiveLogRequest, context: ServerContext
  ) async throws -> Gps_V1_ArchiveLogResponse {
    Gps_V1_ArchiveLogResponse(try await engine.archive(request, by: Principal.caller(context)))
  }

  package func getCluster(
    request: Gps_V1_GetClusterRequest, context: ServerContext
  ) async throws -> Gps_V1_ClusterInfo {
    try await engine.clusterInfo()
  }

  // MARK: Deployments

  package func listDeployments(
    request: Gps_V1_ListDeploymentsRequest, context: ServerContext
  ) async throws -> Gps_V1_ListDeploymentsResponse {
    engine.listDeployments(request)
  }

  package func getDeployment(
    request: Gps_V1_GetDeploymentRequest, context: ServerContext
  ) async throws -> Gps_V1_DeploymentInfo {
    try engine.deployment(request)
  }

  package func handOverDeployment(
    request: Gps_V1_HandOverDeploymentRequest, context: ServerContext
  ) async throws -> Gps_V1_DeploymentInfo {
    try await engine.handOver(request, by: Principal.caller(context))
  }

  // MARK: Workers

  package func registerDeployments(
    request: Gps_V1_RegisterDeploymentsRequest, context: ServerContext
  ) async throws -> Gps_V1_RegisterDeploymentsResponse {
    try await engine.register(request, by: Principal.caller(context))
  }

  package func claim(request: Gps_V1_ClaimRequest, context: ServerContext) async throws -> Gps_V1_ClaimResponse {
    try await engine.claim(request, by: Principal.caller(context))
  }

  package func heartbeat(
    request: Gps_V1_HeartbeatRequest, context: ServerContext
  ) async throws -> Gps_V1_HeartbeatResponse {
    try engine.heartbeat(request, by: Principal.caller(context))
  }

  package func heartbeatMany(
    request: Gps_V1_HeartbeatManyRequest, context: ServerContext
  ) async throws -> Gps_V1_HeartbeatManyResponse {
    try engine.heartbeatMany(request, by: Principal.caller(context))
  }

  package func report(request: Gps_V1_ReportRequest, context: ServerContext) async throws -> Gps_V1_RunInfo {
    Gps_V1_RunInfo(try await engine.report(request, by: Principal.caller(context)))
  }

  package func watchWork(
    request: Gps_V1_WatchWorkRequest, response: RPCWriter<Gps_V1_WorkSignal>, context: ServerContext
  ) async throws {
    // Its place comes back within an idle signal of the worker going away: each signal writes.
    for await _ in try engine.workSignals(request, by: Principal.caller(context)) {
      try await response.write(Gps_V1_WorkSignal())
    }
  }

  // MARK: History

  package func watchRun(
    request: Gps_V1_WatchRunRequest, response: RPCWriter<Gps_V1_HistoryEvent>, context: ServerContext
  ) async throws {
    try await send(await engine.watch(request, by: Principal.caller(context)), to: response, context)
  }

  package func readHistory(
    request: Gps_V1_ReadHistoryRequest, response: RPCWriter<Gps_V1_HistoryEvent>, context: ServerContext
  ) async throws {
    try await send(await engine.history(request, by: Principal.caller(context)), to: response, context)
  }

  /// Writes `events` until they end or the RPC is cancelled.
  func send(
    _ events: HistoryEvents, to response: RPCWriter<Gps_V1_HistoryEvent>, _ context: ServerContext
  ) async throws {
    try await untilCancelled(context) {
      for try await event in events { try await response.write(event) }
    }
  }

  /// Runs `body` until it ends or the RPC is cancelled. gRPC tells a handler of a cancelled RPC
  /// (the client went away) through the context, not by cancelling its task: without this, a
  /// stream waiting for the next event would hold its place, its task and its buffers until one
  /// came.
  func untilCancelled(_ context: ServerContext, _ body: @escaping @Sendable () async throws -> Void) async throws {
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
}
