import Flows
import Foundation
package import GPSModel
package import GRPCCore
import Queue
import RPC
import SwiftProtobuf
import Synchronization

extension ControlService {
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
}
