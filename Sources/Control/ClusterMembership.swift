package import Flows
import Foundation
package import GPSModel
package import PostgresStore
package import Queue
import Synchronization

/// This server's membership of a cluster on a store: what the engine's doors say of the cluster
/// (`GET /api/cluster`, `/readyz`), kept up to date by ``StoreRole``.
package final class ClusterMembership: Sendable {
  package let store: PostgresStore
  package let serverID: String
  /// The control API's address, once it listens (or `--advertise`).
  let address = Mutex<String?>(nil)
  /// When the follower last found nothing more to copy (a caught-up standby looks every second).
  let caughtUpAt = Mutex<ContinuousClock.Instant?>(nil)

  init(store: PostgresStore, serverID: String, advertise: String?) {
    self.store = store
    self.serverID = serverID
    address.withLock { $0 = advertise }
  }

  /// The cluster as the store sees it.
  package func status() async throws(QueueError) -> PostgresStore.Cluster { try await store.cluster() }

  /// Whether a standby has copied everything the store held at its last look, within the last
  /// few seconds (a leader is always caught up).
  package func isCaughtUp(_ queue: RunQueue, within: Duration = .seconds(5)) -> Bool {
    guard queue.isStandby else { return true }
    guard let at = caughtUpAt.withLock({ $0 }) else { return false }
    return ContinuousClock.now - at < within
  }
}

extension PostgresStore.Cluster {
  /// As `GET /api/cluster` and `gps cluster status --output json` give it; `me`: the answering
  /// server's id, marked `"self": true`.
  package func json(me: String? = nil) -> JSONValue {
    func number(_ value: some BinaryInteger) -> JSONValue { .number("\(value)") }
    func milliseconds(_ value: Double) -> JSONValue { .number(String(format: "%.0f", value)) }
    return .object([
      .init("cluster_id", .string(clusterID)),
      .init(
        "leader",
        .object([
          .init("address", .string(leader.address)), .init("epoch", number(leader.epoch)),
          .init("server_id", .string(leader.serverID)), .init("lease_live", .bool(leader.live)),
        ])),
      .init("last_sequence", number(lastSequence)),
      .init(
        "servers",
        .array(
          members.map { member in
            .object([
              .init("server_id", .string(member.report.serverID)),
              .init("address", .string(member.report.address)),
              .init("role", .string(member.report.role)),
              .init("epoch", number(member.report.epoch)),
              .init("last_sequence", number(member.report.lastSequence)),
              .init("started_at", .string(member.startedAt)),
              .init("heartbeat_age_ms", milliseconds(member.heartbeatAge * 1000)),
              .init("lag_events", number(member.lagEvents)),
              .init("lag_ms", milliseconds(member.lagMilliseconds)),
              .init("self", .bool(member.report.serverID == me)),
            ])
          })),
    ])
  }
}
