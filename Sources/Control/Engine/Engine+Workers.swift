import Flows
package import GPSModel
package import GRPCCore
import Queue
import RPC
import SwiftProtobuf
import Synchronization

// What workers call: register their deployments, claim runs, renew leases, report steps, and
// wait for work. A worker acts only for deployments its principal owns (an admin for any).
extension Engine {
  /// Registers the deployments a worker serves; a definition whose types are not in its own
  /// descriptor set is refused here, where the worker's author sees it, not at the first enqueue.
  package func register(_ request: Gps_V1_RegisterDeploymentsRequest, by caller: Caller) async throws
    -> Gps_V1_RegisterDeploymentsResponse
  {
    guard !request.worker.isEmpty else {
      throw RPCError(code: .invalidArgument, message: "a registration needs the worker's id")
    }
    for definition in request.definitions {
      do {
        try RegisteredDeployment.check(definition)
      } catch {
        throw RPCError(error)
      }
    }
    try mayServe(request.definitions.map(\.name), caller)
    let versions = try await queue.register(request.definitions, worker: request.worker, by: caller.name)
    return .with { $0.versions = versions }
  }

  /// Leases up to `request.limit` runs that are due, of the deployments the worker names (an
  /// admin may name none: any deployment); none once the engine stops.
  package func claim(_ request: Gps_V1_ClaimRequest, by caller: Caller) async throws -> Gps_V1_ClaimResponse {
    guard !isStopping else { return Gps_V1_ClaimResponse() }
    if request.deployments.isEmpty, !caller.isAdmin {
      throw RPCError(
        code: .permissionDenied,
        message: "a worker names the deployments it claims (only an admin may claim runs of any deployment)")
    }
    try mayServe(request.deployments, caller)
    let claims = try await queue.claim(
      scheduler: request.scheduler, limit: max(1, Int(request.limit)),
      maxParameterBytes: Gps_V1_RunInfo.answerBudget / 2,
      deployments: request.deployments.isEmpty ? nil : Set(request.deployments), principal: caller.name,
      claimID: request.claimID, retried: request.retried)
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

  /// Renews a lease; the answer says whether the run's cancellation was asked for.
  package func heartbeat(_ request: Gps_V1_HeartbeatRequest, by caller: Caller) throws -> Gps_V1_HeartbeatResponse {
    let reply = try queue.heartbeat(try lease(request.runID, request.leaseToken, caller))
    return .with {
      $0.leaseExpiresMicros = reply.expiresAt.micros
      $0.cancelRequested = reply.cancelRequested
    }
  }

  /// Renews many leases, each with its own outcome: one lost lease fails only its own.
  package func heartbeatMany(_ request: Gps_V1_HeartbeatManyRequest, by caller: Caller) throws(QueueError)
    -> Gps_V1_HeartbeatManyResponse
  {
    // A standby renews no lease: the whole call is refused (naming the leader), so the worker
    // turns to the leader rather than reading each lease as lost.
    if let refusal = queue.standbyRefusal { throw refusal }
    return .with {
      $0.outcomes = request.leases.map { single in
        do throws(RPCError) {
          let lease = try lease(single.runID, single.leaseToken, caller)
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

  /// Records what a leased run's steps did (and its end), durably.
  package func report(_ request: Gps_V1_ReportRequest, by caller: Caller) async throws -> Run {
    let lease = try lease(request.runID, request.leaseToken, caller)
    return try await queue.report(lease, request.events.compactMap(\.kind))
  }

  /// A signal now and whenever work may have arrived for the deployments `request` names (or a
  /// cancellation was asked for), at least once an idle signal: an open stream is a live worker.
  /// It holds one of the caller's stream places until it and its iterators are gone.
  package func workSignals(_ request: Gps_V1_WatchWorkRequest, by caller: Caller) throws(RPCError) -> WorkSignals {
    let deployments = Set(request.deployments)
    try mayServe(deployments, caller)
    return WorkSignals(
      watch: try WorkWatch(engine: self, scheduler: request.scheduler, deployments: deployments, caller: caller))
  }

  // MARK: Ownership

  /// The lease a worker names, for runs of its own deployments only, whatever lease it names.
  func lease(_ runID: String, _ token: UInt64, _ caller: Caller) throws(RPCError) -> LeaseToken {
    guard let id = RunID(runID) else {
      throw RPCError(code: .invalidArgument, message: "'\(runID)' is not a run id")
    }
    if let deployment = queue.withState({ $0.runs[id]?.deployment }) { try mayServe([deployment], caller) }
    return LeaseToken(runID: id, token: token)
  }

  /// Refuses (PERMISSION_DENIED) a caller that is not an admin acting for deployments another
  /// principal registered first. Without tokens every caller is an admin.
  func mayServe(_ deployments: some Sequence<String>, _ caller: Caller) throws(RPCError) {
    guard !caller.isAdmin else { return }
    let name = caller.name
    let foreign = queue.withState { state in
      deployments.lazy.compactMap { deployment in
        Self.owner(of: deployment, in: state).map { (deployment, $0, state.handOvers[deployment]?.by) }
      }.first { $0.1 != name }
    }
    if let (deployment, owner, handedOverBy) = foreign {
      let how = handedOverBy.map { ", to whom \($0) handed it over" } ?? ", who registered it first"
      throw RPCError(
        code: .permissionDenied,
        message:
          "deployment \(deployment) belongs to \(owner)\(how); \(name) may not serve it (an admin may, and may hand it over with `gps deployment hand-over`)"
      )
    }
  }
}

/// A worker's wait for work: its stream place, and the signal the queue pokes; given back and
/// unhooked when the last reference goes.
final class WorkWatch: Sendable {
  let engine: Engine
  let scheduler: String
  let deployments: Set<String>
  let signal = WakeSignal()
  let place: StreamPlace

  init(engine: Engine, scheduler: String, deployments: Set<String>, caller: Caller) throws(RPCError) {
    place = try StreamPlace(in: engine.streams, for: caller.name)
    self.engine = engine
    self.scheduler = scheduler
    self.deployments = deployments
    sawWorker()
    engine.queue.notifyWhenWorkArrives(signal)
    engine.queue.notifyOnCancelRequests(signal)
    engine.workSignals.withLock { $0[ObjectIdentifier(signal)] = signal }
  }

  deinit {
    engine.queue.stopNotifying(signal)
    engine.workSignals.withLock { $0[ObjectIdentifier(signal)] = nil }
  }

  /// An open stream is a live worker, even while it has nothing to claim.
  func sawWorker() {
    if !deployments.isEmpty { engine.queue.sawWorker(scheduler, serving: deployments, principal: "") }
  }
}

/// Signals that work may have arrived: see ``Engine/workSignals(_:by:)``. Ends when the engine
/// stops or the task is cancelled.
package struct WorkSignals: AsyncSequence, Sendable {
  package typealias Element = Void
  let watch: WorkWatch

  package func makeAsyncIterator() -> Iterator { Iterator(watch: watch) }

  package struct Iterator: AsyncIteratorProtocol {
    let watch: WorkWatch
    var first = true

    package mutating func next() async -> Void? {
      let engine = watch.engine
      if first {
        first = false
      } else {
        watch.sawWorker()
        var wait = engine.idleSignal
        if let deadline = engine.queue.nextDeadline {
          wait = Swift.min(wait, Swift.max(.milliseconds(1), deadline - SystemClock().now()))
        }
        await watch.signal.wait(timeout: wait)
      }
      guard !Task.isCancelled, !engine.isStopping else { return nil }
      return ()
    }
  }
}
