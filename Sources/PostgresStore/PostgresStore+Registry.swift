import Foundation
package import GPSModel
import Logging
import NIOCore
import PostgresNIO
import Queue
import Synchronization

// The servers' registry: each server's row, and the cluster as the store sees it.
extension PostgresStore {
  // MARK: The servers' registry

  /// What a server says of itself in the registry, every third of a lease.
  package struct ServerReport: Sendable, Hashable {
    package var serverID: String
    package var address: String
    package var httpAddress: String
    /// `leader` or `standby`.
    package var role: String
    package var epoch: Int64
    /// The last event it has applied.
    package var lastSequence: UInt64

    package init(
      serverID: String, address: String, httpAddress: String = "", role: String, epoch: Int64, lastSequence: UInt64
    ) {
      self.serverID = serverID
      self.address = address
      self.httpAddress = httpAddress
      self.role = role
      self.epoch = epoch
      self.lastSequence = lastSequence
    }
  }

  /// A server as the registry knows it, with how far behind the store's log it was.
  package struct Member: Sendable, Hashable {
    package var report: ServerReport
    package var startedAt: String
    /// Seconds since it last reported.
    package var heartbeatAge: Double
    /// Events the store holds that it had not applied.
    package var lagEvents: UInt64
    /// How long the first event it had not applied had been committed when it last reported.
    package var lagMilliseconds: Double
  }

  /// The cluster as the store sees it.
  package struct Cluster: Sendable, Hashable {
    package var clusterID: String
    package var leader: Leader
    package var lastSequence: UInt64
    package var members: [Member]
  }

  /// Records (or refreshes) a server's row; a leader also forgets servers silent for a day.
  package func report(_ server: ServerReport) async throws(QueueError) {
    _ = try await using("lease", "record this server in its registry") { connection in
      try await connection.query(
        """
        INSERT INTO gps_servers (server_id, address, http_address, role, epoch, last_sequence, started_at, heartbeat_at)
        VALUES (\(server.serverID), \(server.address), \(server.httpAddress), \(server.role), \(server.epoch),
          \(Int64(clamping: server.lastSequence)), clock_timestamp(), clock_timestamp())
        ON CONFLICT (server_id) DO UPDATE SET address = EXCLUDED.address, http_address = EXCLUDED.http_address,
          role = EXCLUDED.role, epoch = EXCLUDED.epoch, last_sequence = EXCLUDED.last_sequence,
          heartbeat_at = EXCLUDED.heartbeat_at
        """, logger: logger)
      if server.role == "leader" {
        try await connection.query(
          "DELETE FROM gps_servers WHERE heartbeat_at < clock_timestamp() - interval '1 day'", logger: logger)
      }
    }
  }

  /// Removes a server's row (a clean stop).
  package func forget(serverID: String) async throws(QueueError) {
    _ = try await using("lease", "remove this server from its registry") { connection in
      try await connection.query("DELETE FROM gps_servers WHERE server_id = \(serverID)", logger: logger)
    }
  }

  /// The leader, the log's end and every registered server with its lag.
  package func cluster() async throws(QueueError) -> Cluster {
    let leader = try await leader()
    let last = try await lastBatch()?.sequence ?? 0
    let members = try await using("reader", writable: false, "read its registry") { connection in
      let rows = try await connection.query(
        """
        SELECT s.server_id, s.address, s.http_address, s.role, s.epoch, s.last_sequence,
          to_char(s.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
          extract(epoch FROM clock_timestamp() - s.heartbeat_at)::float8,
          coalesce(extract(epoch FROM s.heartbeat_at - (
            SELECT b.committed_at FROM gps_batches b WHERE b.first_seq = s.last_sequence + 1)) * 1000, 0)::float8
        FROM gps_servers s ORDER BY s.started_at, s.server_id
        """, logger: logger)
      var members: [Member] = []
      for try await (id, address, http, role, epoch, sequence, started, age, lag) in rows.decode(
        (String, String, String, String, Int64, Int64, String, Double, Double).self)
      {
        members.append(
          Member(
            report: ServerReport(
              serverID: id, address: address, httpAddress: http, role: role, epoch: epoch,
              lastSequence: UInt64(max(0, sequence))),
            startedAt: started, heartbeatAge: age,
            lagEvents: last > UInt64(max(0, sequence)) ? last - UInt64(max(0, sequence)) : 0,
            lagMilliseconds: max(0, lag)))
      }
      return members
    }
    return Cluster(clusterID: clusterID, leader: leader, lastSequence: last, members: members)
  }

  static func milliseconds(_ duration: Duration) -> Int64 {
    let components = duration.components
    return components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
  }
}
