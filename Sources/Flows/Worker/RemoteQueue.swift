import Foundation
public import GPSModel
public import GRPCCore
import RPC
import SwiftProtobuf
import Synchronization

/// A server's queue as a scheduler in another process sees it (`gps scheduler --server ADDR`):
/// claims, heartbeats and reports go over the control API, and a `WatchWork` stream wakes the
/// scheduler when runs may be claimable or a cancel was requested.
public final class RemoteQueue<Transport: ClientTransport>: SchedulerQueue {
  let client: Gps_V1_Control.Client<Transport>
  let scheduler: String
  let signals = Mutex<(work: [WakeSignal], cancels: [WakeSignal])>(([], []))
  let deadline = Mutex<Timestamp?>(nil)
  /// The deployments the scheduler serves, named in `WatchWork` so that an idle worker is seen.
  let deployments: [String]

  public init(client: Gps_V1_Control.Client<Transport>, scheduler: String, deployments: [String] = []) {
    self.client = client
    self.scheduler = scheduler
    self.deployments = deployments
  }

  public func register(_ definitions: [DeploymentDefinition], worker: String) async throws -> [UInt32] {
    let response = try await remote {
      try await client.registerDeployments(
        .with {
          $0.worker = worker
          $0.definitions = definitions
        })
    }
    guard response.versions.count == definitions.count else {
      throw QueueError(code: .invalidArgument, message: "the server answered a registration of other deployments")
    }
    return response.versions
  }

  public func deployment(named name: String, version: UInt32) async throws -> DeploymentVersion? {
    let info: Gps_V1_DeploymentInfo
    do {
      info = try await client.getDeployment(
        .with {
          $0.name = name
          $0.version = version
        })
    } catch let error as RPCError where error.code == .notFound {
      return nil
    } catch let error as RPCError {
      throw QueueError(error)
    }
    return DeploymentVersion(
      definition: info.definition, version: info.version, registeredAt: Timestamp(micros: info.registeredAtMicros),
      worker: "", registeredBy: info.registeredBy, sequence: 0)
  }

  public func claim(scheduler: String, limit: Int, deployments: Set<String>?) async throws -> [Claim] {
    let response = try await remote {
      try await client.claim(
        .with {
          $0.scheduler = scheduler
          $0.limit = UInt32(clamping: limit)
          $0.deployments = deployments.map { $0.sorted() } ?? []
        })
    }
    deadline.withLock {
      $0 = response.nextDeadlineMicros == 0 ? nil : Timestamp(micros: response.nextDeadlineMicros)
    }
    return try response.claims.map { claimed in
      guard var run = claimed.run.run else {
        throw QueueError(code: .invalidArgument, message: "the server sent a run this scheduler cannot read")
      }
      let lease = Lease(
        scheduler: scheduler, token: claimed.leaseToken, expiresAt: Timestamp(micros: claimed.leaseExpiresMicros))
      run.lease = lease
      return Claim(run: run, lease: lease)
    }
  }

  public func heartbeat(_ lease: LeaseToken) async throws -> HeartbeatReply {
    let response = try await remote {
      try await client.heartbeat(
        .with {
          $0.runID = lease.runID.description
          $0.leaseToken = lease.token
        })
    }
    return HeartbeatReply(
      expiresAt: Timestamp(micros: response.leaseExpiresMicros), cancelRequested: response.cancelRequested)
  }

  public func heartbeat(all leases: [LeaseToken]) async throws -> [Result<HeartbeatReply, QueueError>] {
    let response = try await remote {
      try await client.heartbeatMany(
        .with {
          $0.leases = leases.map { lease in
            .with {
              $0.runID = lease.runID.description
              $0.leaseToken = lease.token
            }
          }
        })
    }
    guard response.outcomes.count == leases.count else {
      throw QueueError(code: .invalidArgument, message: "the server answered a heartbeat for another set of leases")
    }
    return response.outcomes.map { outcome in
      if outcome.hasRenewed {
        return .success(
          HeartbeatReply(
            expiresAt: Timestamp(micros: outcome.renewed.leaseExpiresMicros),
            cancelRequested: outcome.renewed.cancelRequested))
      }
      let code = heartbeatCodes.first { $0.canonicalName == outcome.errorCode } ?? .unknown
      return .failure(QueueError(RPCError(code: code, message: outcome.errorMessage)))
    }
  }

  @discardableResult
  public func report(_ lease: LeaseToken, _ events: [RunEvent.OneOf_Kind]) async throws -> Run {
    let info = try await remote {
      try await client.report(
        .with {
          $0.runID = lease.runID.description
          $0.leaseToken = lease.token
          $0.events = events.map { kind in RunEvent.with { $0.kind = kind } }
        })
    }
    guard let run = info.run else {
      throw QueueError(code: .invalidArgument, message: "the server sent a run this scheduler cannot read")
    }
    return run
  }

  public func notifyWhenWorkArrives(_ signal: WakeSignal) { signals.withLock { $0.work.append(signal) } }

  public func notifyOnCancelRequests(_ signal: WakeSignal) { signals.withLock { $0.cancels.append(signal) } }

  public var nextDeadline: Timestamp? { deadline.withLock { $0 } }

  /// Follows the server's `WatchWork` stream until cancelled, passing each message on to the
  /// scheduler's signals; reconnects after a failure, waking the scheduler so it looks at once.
  public func watchWork(onError: @Sendable (any Error) -> Void = { _ in }) async {
    while !Task.isCancelled {
      do {
        try await client.watchWork(
          .with {
            $0.scheduler = scheduler
            $0.deployments = deployments
          }
        ) { response in
          for try await _ in response.messages { self.wakeAll() }
        }
      } catch {
        if Task.isCancelled { return }
        onError(error)
      }
      wakeAll()
      try? await Task.sleep(for: .milliseconds(500))
    }
  }

  func wakeAll() {
    let (work, cancels) = signals.withLock { ($0.work, $0.cancels) }
    for signal in work + cancels { signal.signal() }
  }

  /// Runs a call, turning its status into the queue error the scheduler understands.
  func remote<T>(_ call: () async throws -> T) async throws -> T {
    do {
      return try await call()
    } catch let error as RPCError {
      throw QueueError(error)
    }
  }
}

/// The status codes a heartbeat answers with, by name.
private let heartbeatCodes: [RPCError.Code] = [
  .aborted, .notFound, .invalidArgument, .failedPrecondition, .unavailable, .internalError, .dataLoss,
  .resourceExhausted, .permissionDenied, .unauthenticated,
]
