import Foundation
public import GPSModel
public import GRPCCore
public import GRPCNIOTransportHTTP2
import RPC
import SwiftProtobuf
import Synchronization

/// A server's queue as a scheduler in another process sees it (`gps scheduler --server ADDR`):
/// claims, heartbeats and reports go over the control API, and a `WatchWork` stream wakes the
/// scheduler when runs may be claimable or a cancel was requested.
public final class RemoteQueue<Transport: ClientTransport>: SchedulerQueue {
  /// A client of the server in use (with several servers, the leader as far as known).
  let currentClient: @Sendable () throws -> Gps_V1_Control.Client<Transport>
  /// Told of every UNAVAILABLE answer: with several servers, the next call goes to the leader the
  /// answer names, or to the next server.
  let onUnavailable: @Sendable (RPCError) -> Void
  let scheduler: String
  let signals = Mutex<(work: [WakeSignal], cancels: [WakeSignal])>(([], []))
  let deadline = Mutex<Timestamp?>(nil)
  /// The deployments the scheduler serves, named in `WatchWork` so that an idle worker is seen.
  let deployments: [String]
  /// How long a report or a claim is retried while the server cannot take it (a restart, a failover).
  let reportPatience = Duration.seconds(30)

  public init(client: Gps_V1_Control.Client<Transport>, scheduler: String, deployments: [String] = []) {
    currentClient = { client }
    onUnavailable = { _ in }
    self.scheduler = scheduler
    self.deployments = deployments
  }

  /// A queue served by whichever of `servers` leads: its calls follow the leader across a
  /// failover (the leases of runs in flight are in the log; the new leader honours them).
  public init(servers: ControlServers, scheduler: String, deployments: [String] = [])
  where Transport == HTTP2ClientTransport.Posix {
    currentClient = { try servers.client() }
    onUnavailable = { error in servers.unavailable(error, from: servers.current) }
    self.scheduler = scheduler
    self.deployments = deployments
  }

  var client: Gps_V1_Control.Client<Transport> {
    get throws { try currentClient() }
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
      if error.code == .unavailable { onUnavailable(error) }
      throw QueueError(error)
    }
    return DeploymentVersion(
      definition: info.definition, version: info.version, registeredAt: Timestamp(micros: info.registeredAtMicros),
      worker: "", registeredBy: info.registeredBy, sequence: 0)
  }

  public func claim(scheduler: String, limit: Int, deployments: Set<String>?) async throws -> [Claim] {
    // A claim the server could not answer (a failover under way, a dropped connection) is sent
    // again under its id for up to `reportPatience`: runs it claimed before the answer was lost
    // are answered again, rather than waiting out their lease to be re-queued.
    var request = Gps_V1_ClaimRequest.with {
      $0.scheduler = scheduler
      $0.limit = UInt32(clamping: limit)
      $0.deployments = deployments.map { $0.sorted() } ?? []
      $0.claimID = RunID().description
    }
    let response = try await whileUnavailable { attempt in
      request.retried = attempt > 0
      return try await remote { [request] in try await client.claim(request) }
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
    // A report the server could not take (restarting, or a failover under way: a standby answers
    // UNAVAILABLE naming the leader) is sent again, to the leader, for up to `reportPatience`: the
    // run's work is not thrown away. One whose answer was lost and that had been applied is answered
    // the second time with the run where it left it, never applied twice.
    let info = try await whileUnavailable { attempt in
      do {
        return try await remote {
          try await client.report(
            .with {
              $0.runID = lease.runID.description
              $0.leaseToken = lease.token
              $0.events = events.map { kind in RunEvent.with { $0.kind = kind } }
            })
        }
      } catch let error as QueueError where error.code == .leaseLost && attempt > 0 {
        // A report that ended the run leaves no lease behind: if the run ended as it said, it was
        // this report, applied before its answer was lost.
        let ended = try? await remote { try await client.getRun(.with { $0.runID = lease.runID.description }) }
        guard let ended, let run = ended.run, let last = events.last, run.state.isTerminal,
          run.reflects(report: last)
        else { throw error }
        return ended
      }
    }
    guard let run = info.run else {
      throw QueueError(code: .invalidArgument, message: "the server sent a run this scheduler cannot read")
    }
    return run
  }

  /// Runs `body` (told how many times it ran before) again while the server answers UNAVAILABLE
  /// (restarting, or a failover under way), for up to `reportPatience`, pausing longer each time.
  private func whileUnavailable<T>(_ body: (_ attempt: Int) async throws -> T) async throws -> T {
    let started = ContinuousClock.now
    var pause = Duration.milliseconds(100)
    var attempt = 0
    while true {
      do {
        return try await body(attempt)
      } catch let error as QueueError where error.isUnavailable && ContinuousClock.now - started < reportPatience {
        attempt += 1
        try await Task.sleep(for: pause)
        pause = min(pause * 2, .seconds(2))
      }
    }
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
        if let error = error as? RPCError, error.code == .unavailable { onUnavailable(error) }
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
      if error.code == .unavailable { onUnavailable(error) }
      throw QueueError(error)
    }
  }
}

/// The status codes a heartbeat answers with, by name.
private let heartbeatCodes: [RPCError.Code] = [
  .aborted, .notFound, .invalidArgument, .failedPrecondition, .unavailable, .internalError, .dataLoss,
  .resourceExhausted, .permissionDenied, .unauthenticated,
]

extension QueueError {
  /// A call the server did not take: it could not be reached, or it is a standby.
  var isUnavailable: Bool { (cause as? RPCError)?.code == .unavailable }
}
