import Foundation
import GPSModel
package import Logging
package import PostgresStore
import ServiceLifecycle

/// A server's place in a cluster on a PostgreSQL store (`--store postgres://…`).
package struct StoreConfiguration: Sendable {
  package var location: StoreLocation
  package var password: StorePassword
  /// The address other servers and clients reach this one's control API at; nil: the address it
  /// binds (recorded once it listens).
  package var advertise: String?
  /// How long a leader's lease lasts unrenewed: a standby takes over within about this long of
  /// the leader's death. Renewed every third of it.
  package var lease: Duration = .seconds(5)
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
    let result: Int64?? = try await cancelWhenGracefulShutdown {
      var announced: Int64?
      while true {
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
        try await Task.sleep(for: configuration.lease / 3)
      }
    }
    return result ?? nil
  }
}

/// Keeps this server's lease: renews it every third of its length. When the lease is lost (another
/// server took over, or renewal failed for as long as the lease lasts: this server may no longer
/// lead) it throws one line, which stops the server; a graceful stop releases the lease so a
/// standby takes over at once. The log's own commits are fenced by the epoch either way: this only
/// makes a deposed leader stop serving soon.
struct LeaseKeeper: Service {
  let store: PostgresStore
  let configuration: StoreConfiguration
  let epoch: Int64
  let logger: Logger

  /// Records the bound address as the leader's (when no `--advertise` was given).
  func recordAddress(_ address: String) {
    let (store, epoch, serverID, logger) = (store, epoch, configuration.serverID, logger)
    Task {
      do throws(QueueError) {
        try await store.setAddress(address, epoch: epoch, serverID: serverID)
      } catch {
        logger.warning("could not record this leader's address in the store: \(error.message)")
      }
    }
  }

  func run() async throws {
    do {
      try await cancelWhenGracefulShutdown {
        var lastRenewed = ContinuousClock.now
        while true {
          try await Task.sleep(for: configuration.lease / 3)
          let attempt = ContinuousClock.now
          let renewed: Bool
          do {
            renewed = try await store.renew(
              epoch: epoch, serverID: configuration.serverID, lease: configuration.lease)
          } catch {
            // Unreachable for now: the lease runs from the last renewal's start.
            if ContinuousClock.now - lastRenewed >= configuration.lease {
              throw ControlError(
                "this server lost the lead of the store \(store.location): it could not renew its lease for \(configuration.lease) (\(PostgresStore.describe(error))); stopping"
              )
            }
            logger.warning("could not renew the leader's lease: \(PostgresStore.describe(error)); retrying")
            continue
          }
          guard renewed else {
            let leader = try? await store.leader()
            throw ControlError(
              "this server lost the lead of the store \(store.location): \(leader.map { "\($0.address.isEmpty ? "another server" : $0.address) leads at epoch \($0.epoch)" } ?? "another server leads"); stopping"
            )
          }
          lastRenewed = attempt
        }
      }
    } catch is CancellationError {}
    try? await store.release(epoch: epoch, serverID: configuration.serverID)
  }
}
