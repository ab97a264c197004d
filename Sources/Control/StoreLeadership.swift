import Foundation
import GPSModel
package import Logging
package import PostgresStore
import Queue
import ServiceLifecycle
import Synchronization

/// A server's place in a cluster on a PostgreSQL store (`--store postgres://…`).
package struct StoreConfiguration: Sendable {
  package var location: StoreLocation
  package var password: StorePassword
  /// The address other servers and clients reach this one's control API at; nil: the address it
  /// binds (recorded once it listens).
  package var advertise: String?
  /// How long a leader's lease lasts unrenewed: a standby takes over within about this long of
  /// the leader's death (it looks again as the lease runs out). Renewed every third of it.
  package var lease: Duration = .seconds(4)
  /// This process's id in the store (new at every start: a restarted server is a new member).
  package var serverID = UUID().uuidString.lowercased()

  package init(location: StoreLocation, password: StorePassword, advertise: String?) {
    self.location = location
    self.password = password
    self.advertise = advertise
  }
}

/// Taking and keeping the lead of a store.
package enum StoreLeadership {
  /// Waits until this server leads the store (another's lease ran out, or none was held) and
  /// returns its epoch; nil when a graceful shutdown came first. Says once, in one line, whom it
  /// waits for.
  package static func acquire(
    store: PostgresStore, configuration: StoreConfiguration, logger: Logger
  ) async throws -> Int64? {
    do {
      return try await cancelWhenGracefulShutdown {
        try await waitForTheLead(store: store, configuration: configuration, logger: logger)
      }
    } catch is CancellationError where Task.isShuttingDownGracefully || Task.isCancelled {
      return nil
    }
  }

  private static func waitForTheLead(
    store: PostgresStore, configuration: StoreConfiguration, logger: Logger
  ) async throws -> Int64 {
    var announced: Int64?
    var unreachable = false
    while true {
      var wait = configuration.lease / 3
      do throws(QueueError) {
        if let epoch = try await store.acquire(
          serverID: configuration.serverID, address: configuration.advertise ?? "", lease: configuration.lease)
        {
          logger.info(
            "this server leads the store",
            metadata: [
              "store": "\(store.location)", "epoch": "\(epoch)",
              "advertise": "\(configuration.advertise ?? "the bound address")",
            ])
          return epoch
        }
        let leader = try await store.leader()
        if announced != leader.epoch {
          announced = leader.epoch
          logger.notice(
            "standing by: \(leader.address.isEmpty ? "another server" : leader.address) leads the store \(store.location) at epoch \(leader.epoch); this server takes over when its lease runs out"
          )
        }
        unreachable = false
        // Looked at again when the lease runs out (at most a third of a lease from now).
        wait = min(configuration.lease / 3, max(.milliseconds(20), leader.remaining + .milliseconds(10)))
      } catch {
        // An unreachable store is waited for (the standby serves what it has meanwhile).
        guard error.code == .unavailable, !Task.isCancelled else { throw error }
        if !unreachable { logger.warning("cannot reach the store to take the lead: \(error.message); retrying") }
        unreachable = true
      }
      try await Task.sleep(for: wait)
    }
  }
}

/// A server's part in a store's cluster, from start to stop: a hot standby first — its queue
/// follows the batches the leader commits (woken by the store's notifications, polling every
/// second as a fallback), answers reads, and refuses writes naming the leader — until it takes the
/// lead (no live lease: the leader died, was cut off, or stopped); then it copies the last
/// batches, becomes the leader (``RunQueue/promote(committingTo:)``), opens `leading` and keeps
/// its lease. Losing the lease throws ``SteppedDown`` (the server opens again as a standby); a
/// graceful stop releases it so a standby takes over at once.
struct StoreRole: Service {
  /// This server led and no longer does (its lease was lost, or its log writer stopped): the
  /// server opens again, from the store, as a standby.
  struct SteppedDown: Error {
    var message: String
    /// The store stopped answering (its connections were abandoned): nothing more is asked of it
    /// on the way down.
    var unanswered = false
  }

  let store: PostgresStore
  let configuration: StoreConfiguration
  let queue: RunQueue
  let membership: ClusterMembership
  let logger: Logger
  /// Opened once this server leads (the scheduler and the queue's maintenance wait for it).
  let leading: Latch
  /// What a new leader does first (registering the embedded worker's deployments).
  let onLeading: @Sendable () async throws -> Void

  func run() async throws {
    do {
      try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await report() }
        defer { group.cancelAll() }
        try await serve()
      }
    } catch let steppedDown as SteppedDown where steppedDown.unanswered {
      throw steppedDown
    }
    try? await store.forget(serverID: configuration.serverID)
  }

  /// Says in the store's registry, every third of a lease, who this server is, its role and how
  /// far it has applied the log (`gps cluster status`).
  func report() async {
    while !Task.isCancelled {
      // The epoch as the follower (or this leader) last learned it: no read of its own.
      let leading = !queue.isStandby
      try? await store.report(
        PostgresStore.ServerReport(
          serverID: configuration.serverID, address: membership.address.withLock { $0 } ?? "",
          httpAddress: membership.webURL.withLock { $0 } ?? "", role: leading ? "leader" : "standby",
          epoch: membership.epoch.withLock { $0 }, lastSequence: queue.durableSequence))
      try? await Task.sleep(for: configuration.lease / 3)
    }
  }

  func serve() async throws {
    let epoch = try await withThrowingTaskGroup(of: Int64?.self) { group in
      group.addTask { [self] in
        try await follow()
        return nil
      }
      group.addTask { [self] in
        try await StoreLeadership.acquire(store: store, configuration: configuration, logger: logger)
      }
      defer { group.cancelAll() }
      return try await group.next() ?? nil
    }
    guard let epoch else { return }
    do {
      // The old leader can no longer commit (its epoch is over): what it did commit is copied first.
      while true {
        let batches = try await store.batches(after: queue.followingFrom - 1)
        if batches.isEmpty { break }
        try queue.follow(batches)
      }
      membership.caughtUpAt.withLock { $0 = .now }
      membership.epoch.withLock { $0 = epoch }
      membership.leaderWebURL.withLock { $0 = nil }
      queue.promote(committingTo: EpochWriter(store: store, epoch: epoch, serverID: configuration.serverID))
      leading.open()
      try await onLeading()
    } catch {
      try? await store.release(epoch: epoch, serverID: configuration.serverID)
      throw error
    }
    try await keepLease(epoch: epoch)
  }

  /// Applies the store's batches as they come, until cancelled; an unreachable store is waited for.
  func follow() async throws {
    let wake = WakeSignal()
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { [store, logger] in await Self.listen(store: store, wake: wake, logger: logger) }
      defer { group.cancelAll() }
      var unreachable = false
      var anchorCheckedAt = ContinuousClock.now - .seconds(1)
      while !Task.isCancelled {
        switch await followOnce() {
        case .success(true):
          continue
        case .success(false):
          if unreachable { logger.notice("the store answers again; following its log") }
          unreachable = false
          if ContinuousClock.now - anchorCheckedAt >= .seconds(1) {
            anchorCheckedAt = .now
            await adoptTheStoresArchive()
          }
        case .failure where Task.isCancelled:
          return
        case .failure(let error) where error.code == .unavailable:
          if !unreachable { logger.warning("cannot follow the store: \(error.message); retrying every second") }
          unreachable = true
        case .failure(let error):
          throw error
        }
        await wake.wait(timeout: .seconds(1))
      }
    }
  }

  /// When the leader archived the store's log past this copy's start, this copy archives its
  /// own segments as far (once its run index holds their runs); a problem is said and retried.
  func adoptTheStoresArchive() async {
    do {
      guard let stored = try await store.anchor(), stored.anchor.firstSequence > queue.logStart else { return }
      let queue = queue
      let adopted = try await blocking { try queue.adoptArchive(stored.anchor, deleted: stored.deleted) }
      if adopted {
        logger.info(
          "archived this server's copy of the log as the leader archived the store's",
          metadata: ["log_start": "\(queue.logStart)", "deleted": "\(stored.deleted)"])
      }
    } catch {
      let problem = (error as? QueueError)?.message ?? "\(error)"
      logger.warning("could not archive this server's copy of the log as the store's was: \(problem); retrying")
    }
  }

  /// Applies the store's next batches (true) or, when there are none, learns who leads (false).
  private func followOnce() async -> Result<Bool, QueueError> {
    do throws(QueueError) {
      let limit = 256
      let batches = try await store.batches(after: queue.followingFrom - 1, limit: limit)
      if !batches.isEmpty { try queue.follow(batches) }
      if batches.count < limit { membership.caughtUpAt.withLock { $0 = .now } }
      if !batches.isEmpty { return .success(true) }
      let leader = try await store.leader()
      queue.setLeader(leader.live && !leader.address.isEmpty ? leader.address : nil)
      membership.leaderWebURL.withLock { $0 = leader.live && !leader.webURL.isEmpty ? leader.webURL : nil }
      membership.epoch.withLock { $0 = leader.epoch }
      return .success(false)
    } catch {
      return .failure(error)
    }
  }

  /// Signals `wake` at every batch the store commits (LISTEN on its channel), reconnecting after a
  /// second when the connection is lost; the follower polls anyway.
  static func listen(store: PostgresStore, wake: WakeSignal, logger: Logger) async {
    while !Task.isCancelled {
      do throws(QueueError) {
        try await store.listenForBatches { wake.signal() }
      } catch {
        logger.debug("listening for the store's batches stopped: \(error.message)")
      }
      try? await Task.sleep(for: .seconds(1))
    }
  }

  /// Renews the lease every third of its length until a graceful stop (which releases it) or its
  /// loss (which throws: another server took over, or no renewal answered for as long as the lease
  /// lasts, so this server may no longer lead). The log's own commits are fenced by the epoch either
  /// way: this makes a deposed leader stop serving soon. A renewal runs beside the loop, so one the
  /// store never answers (a partition: the connection is silent, not closed) cannot hold the loop:
  /// after a lease without an answer, the store's connections are abandoned (what hangs on them
  /// fails) and this server steps down.
  func keepLease(epoch: Int64) async throws {
    do {
      try await cancelWhenGracefulShutdown { [store, configuration, logger] in
        var lastRenewed = ContinuousClock.now
        var renewal: Renewal?
        var lastProblem = "the store did not answer"
        while true {
          try await Task.sleep(for: configuration.lease / 3)
          if let failure = queue.failure {
            // Its state may hold what the store does not: it stops, and a standby takes over.
            renewal?.task.cancel()
            try? await store.release(epoch: epoch, serverID: configuration.serverID)
            throw SteppedDown(
              message: "this server stops leading the store \(store.location): \(failure.message)")
          }
          if let current = renewal, let outcome = current.outcome {
            renewal = nil
            switch outcome {
            case .success(true):
              lastRenewed = current.started
            case .success(false):
              let leader = try? await store.leader()
              throw SteppedDown(
                message:
                  "this server lost the lead of the store \(store.location): \(leader.map { "\($0.address.isEmpty ? "another server" : $0.address) leads at epoch \($0.epoch)" } ?? "another server leads")"
              )
            case .failure(let error):
              lastProblem = error.message
              logger.warning("could not renew the leader's lease: \(error.message); retrying")
            }
          }
          if ContinuousClock.now - lastRenewed >= configuration.lease {
            renewal?.task.cancel()
            store.abandonConnections()
            throw SteppedDown(
              message:
                "this server lost the lead of the store \(store.location): it could not renew its lease for \(configuration.lease) (\(renewal == nil ? lastProblem : "the store did not answer"))",
              unanswered: true)
          }
          if renewal == nil {
            renewal = Renewal(store: store, epoch: epoch, configuration: configuration)
          }
        }
      }
    } catch is CancellationError {}
    try? await store.release(epoch: epoch, serverID: configuration.serverID)
  }

  /// One renewal of the lease, under way beside the loop that keeps it; its outcome once it came.
  final class Renewal: Sendable {
    final class Outcome: Sendable {
      let value = Mutex<Result<Bool, QueueError>?>(nil)
    }
    let started = ContinuousClock.now
    private let answer = Outcome()
    let task: Task<Void, Never>
    var outcome: Result<Bool, QueueError>? { answer.value.withLock { $0 } }

    init(store: PostgresStore, epoch: Int64, configuration: StoreConfiguration) {
      let outcome = answer
      task = Task {
        let result: Result<Bool, QueueError>
        do throws(QueueError) {
          result = .success(
            try await store.renew(epoch: epoch, serverID: configuration.serverID, lease: configuration.lease))
        } catch {
          result = .failure(error)
        }
        outcome.value.withLock { $0 = result }
      }
    }
  }

  /// Records the bound address as the leader's (when no `--advertise` was given), once it leads.
  func recordAddress(_ address: String) {
    membership.address.withLock { $0 = address }
    let (store, leading, serverID, logger) = (store, leading, configuration.serverID, logger)
    Task {
      guard await leading.wait() else { return }
      do throws(QueueError) {
        let leader = try await store.leader()
        guard leader.serverID == serverID else { return }
        try await store.setAddress(address, epoch: leader.epoch, serverID: serverID)
      } catch {
        logger.warning("could not record this leader's address in the store: \(error.message)")
      }
    }
  }
}
