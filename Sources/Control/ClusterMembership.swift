package import Flows
import Foundation
package import GPSModel
package import PostgresStore
package import Queue
import SwiftProtobuf
package import Synchronization

/// This server's membership of a cluster on a store: what the engine's doors say of the cluster
/// (`GET /api/cluster`, `/readyz`), kept up to date by ``StoreRole``.
package final class ClusterMembership: Sendable {
  package let store: PostgresStore
  package let serverID: String
  /// The control API's address, once it listens (or `--advertise`).
  let address = Mutex<String?>(nil)
  /// When the follower last found nothing more to copy (a caught-up standby looks every second).
  let caughtUpAt = Mutex<ContinuousClock.Instant?>(nil)
  /// This server's web UI (`--public-url`, else the bound address), once it listens: reported in
  /// the registry, so that standbys send users writing there to the leader's.
  package let webURL = Mutex<String?>(nil)
  /// The leader's web UI, as the registry last said (nil: unknown, or this server leads).
  package let leaderWebURL = Mutex<String?>(nil)
  /// The epoch of the lead as this server last learned it (its own once it leads).
  let epoch = Mutex<Int64>(0)

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
  package func json(me: String? = nil) -> JSONValue { Gps_V1_ClusterInfo(self, me: me).json }
}

extension Gps_V1_ClusterInfo {
  /// The cluster as `GetCluster` answers it; `me`: the answering server's id.
  package init(_ cluster: PostgresStore.Cluster, me: String? = nil) {
    self = .with { info in
      info.clusterID = cluster.clusterID
      info.leader = .with {
        $0.address = cluster.leader.address
        $0.epoch = cluster.leader.epoch
        $0.serverID = cluster.leader.serverID
        $0.leaseLive = cluster.leader.live
      }
      info.lastSequence = cluster.lastSequence
      info.servers = cluster.members.map { member in
        .with {
          $0.serverID = member.report.serverID
          $0.address = member.report.address
          $0.role = member.report.role
          $0.epoch = member.report.epoch
          $0.lastSequence = member.report.lastSequence
          $0.startedAt = member.startedAt
          $0.heartbeatAgeSeconds = member.heartbeatAge
          $0.lagEvents = member.lagEvents
          $0.lagMilliseconds = member.lagMilliseconds
          $0.answering = member.report.serverID == me
        }
      }
    }
  }

  /// As `GET /api/cluster` and `gps cluster status --output json` give it.
  package var json: JSONValue {
    func number(_ value: some BinaryInteger) -> JSONValue { .number("\(value)") }
    func milliseconds(_ value: Double) -> JSONValue { .number(String(format: "%.0f", value)) }
    return .object([
      .init("cluster_id", .string(clusterID)),
      .init(
        "leader",
        .object([
          .init("address", .string(leader.address)), .init("epoch", number(leader.epoch)),
          .init("server_id", .string(leader.serverID)), .init("lease_live", .bool(leader.leaseLive)),
        ])),
      .init("last_sequence", number(lastSequence)),
      .init(
        "servers",
        .array(
          servers.map { server in
            .object([
              .init("server_id", .string(server.serverID)),
              .init("address", .string(server.address)),
              .init("role", .string(server.role)),
              .init("epoch", number(server.epoch)),
              .init("last_sequence", number(server.lastSequence)),
              .init("started_at", .string(server.startedAt)),
              .init("heartbeat_age_ms", milliseconds(server.heartbeatAgeSeconds * 1000)),
              .init("lag_events", number(server.lagEvents)),
              .init("lag_ms", milliseconds(server.lagMilliseconds)),
              .init("self", .bool(server.answering)),
            ])
          })),
    ])
  }
}
