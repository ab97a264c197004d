import Foundation
package import GPSModel
import Logging
import NIOCore
import PostgresNIO
import Queue
import Synchronization

// Leadership: a lease with an epoch in the database's one leader row.
extension PostgresStore {
  // MARK: Leadership

  /// The leader's record.
  package struct Leader: Sendable, Hashable {
    package var epoch: Int64
    package var serverID: String
    package var address: String
    /// Whether its lease has not run out (by the database's clock).
    package var live: Bool
    /// How long its lease still runs (zero once it ran out).
    package var remaining: Duration = .zero
    /// Its web UI's URL, as it last reported it (empty: none, or not reported yet).
    package var webURL = ""
  }

  package func leader() async throws(QueueError) -> Leader {
    try await using("reader", writable: false, "read its leader") { connection in
      let rows = try await connection.query(
        """
        SELECT l.epoch, l.server_id, l.address, l.lease_until > clock_timestamp(),
          (extract(epoch FROM greatest(l.lease_until, clock_timestamp()) - clock_timestamp()) * 1000)::float8,
          coalesce(s.http_address, '')
        FROM gps_leader l LEFT JOIN gps_servers s ON s.server_id = l.server_id WHERE l.singleton
        """,
        logger: logger
      ).collect()
      guard let row = rows.first else {
        throw QueueError(code: .corrupt, message: "the store \(location) has no leader record: its schema is damaged")
      }
      let (epoch, server, address, live, remaining, web) = try row.decode(
        (Int64, String, String, Bool, Double, String).self)
      return Leader(
        epoch: epoch, serverID: server, address: address, live: live,
        remaining: .milliseconds(Int64(max(0, min(remaining, 86_400_000)))), webURL: web)
    }
  }

  /// Takes the lead when nobody holds a live lease: a new epoch, this server's for `lease`.
  /// Returns the epoch, or nil while another server's lease runs.
  package func acquire(serverID: String, address: String, lease: Duration) async throws(QueueError) -> Int64? {
    let milliseconds = Self.milliseconds(lease)
    return try await using("lease", "take the lead") { connection in
      let rows = try await connection.query(
        """
        UPDATE gps_leader SET epoch = epoch + 1, server_id = \(serverID), address = \(address),
          lease_until = clock_timestamp() + \(milliseconds) * interval '1 millisecond',
          acquired_at = clock_timestamp(), renewed_at = clock_timestamp()
        WHERE singleton AND lease_until <= clock_timestamp()
        RETURNING epoch
        """, logger: logger
      ).collect()
      return try rows.first?.decode(Int64.self)
    }
  }

  /// Records the address the leader of `epoch` is reached at (once it knows its bound port).
  package func setAddress(_ address: String, epoch: Int64, serverID: String) async throws(QueueError) {
    _ = try await using("lease", "record the leader's address") { connection in
      try await connection.query(
        """
        UPDATE gps_leader SET address = \(address)
        WHERE singleton AND epoch = \(epoch) AND server_id = \(serverID)
        """, logger: logger)
    }
  }

  /// Extends this server's lease; false when its epoch is over.
  package func renew(epoch: Int64, serverID: String, lease: Duration) async throws(QueueError) -> Bool {
    let milliseconds = Self.milliseconds(lease)
    return try await using("lease", "renew the leader's lease") { connection in
      let rows = try await connection.query(
        """
        UPDATE gps_leader SET lease_until = clock_timestamp() + \(milliseconds) * interval '1 millisecond',
          renewed_at = clock_timestamp()
        WHERE singleton AND epoch = \(epoch) AND server_id = \(serverID)
        RETURNING epoch
        """, logger: logger
      ).collect()
      return rows.count == 1
    }
  }

  /// Ends this server's lease at once (a clean stop), so a standby need not wait for it to run out.
  package func release(epoch: Int64, serverID: String) async throws(QueueError) {
    _ = try await using("lease", "release the lead") { connection in
      try await connection.query(
        """
        UPDATE gps_leader SET lease_until = '-infinity'
        WHERE singleton AND epoch = \(epoch) AND server_id = \(serverID)
        """, logger: logger)
    }
  }
}
