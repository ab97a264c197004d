import Foundation
import GPSModel
import Logging
import NIOCore
import PostgresNIO
import Queue
import Synchronization

// The schema: created and migrated under an advisory lock, versioned, one cluster id.
extension PostgresStore {
  // MARK: Schema

  /// Creates the schema or brings it to ``schemaVersion``, under a lock so servers starting
  /// together do not race; returns the cluster's id.
  func migrate() async throws(QueueError) -> String {
    try await using("schema", "create its schema") { connection in
      try await connection.withTransaction(logger: logger) { connection in
        try await connection.query("SELECT pg_advisory_xact_lock(4711001)", logger: logger)
        try await connection.query(
          """
          CREATE TABLE IF NOT EXISTS gps_schema (
            singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            version integer NOT NULL,
            cluster_id text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now())
          """, logger: logger)
        let rows = try await connection.query("SELECT version, cluster_id FROM gps_schema", logger: logger).collect()
        var version = 0
        var clusterID = UUID().uuidString.lowercased()
        if let row = rows.first {
          let (stored, id) = try row.decode((Int, String).self)
          version = stored
          clusterID = id
        }
        guard version <= Self.schemaVersion else {
          throw QueueError(
            code: .invalidArgument,
            message:
              "the store \(location) holds a GPS schema of version \(version), newer than this gps knows (\(Self.schemaVersion)): upgrade gps"
          )
        }
        for step in Self.migrations.dropFirst(version) {
          for statement in step { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger) }
        }
        if rows.isEmpty {
          try await connection.query(
            "INSERT INTO gps_schema (version, cluster_id) VALUES (\(Self.schemaVersion), \(clusterID))",
            logger: logger)
        } else if version < Self.schemaVersion {
          try await connection.query("UPDATE gps_schema SET version = \(Self.schemaVersion)", logger: logger)
        }
        return clusterID
      }
    }
  }

  /// The statements of each schema version, in order.
  static let migrations: [[String]] = [
    [
      """
      CREATE TABLE gps_batches (
        first_seq bigint PRIMARY KEY CHECK (first_seq > 0),
        last_seq bigint NOT NULL UNIQUE CHECK (last_seq >= first_seq),
        epoch bigint NOT NULL,
        hash bytea NOT NULL CHECK (length(hash) = 32),
        frame bytea NOT NULL,
        committed_at timestamptz NOT NULL DEFAULT clock_timestamp())
      """,
      """
      CREATE TABLE gps_leader (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        epoch bigint NOT NULL,
        server_id text NOT NULL,
        address text NOT NULL,
        lease_until timestamptz NOT NULL,
        acquired_at timestamptz NOT NULL,
        renewed_at timestamptz NOT NULL)
      """,
      "INSERT INTO gps_leader VALUES (true, 0, '', '', '-infinity', now(), now())",
      """
      CREATE TABLE gps_servers (
        server_id text PRIMARY KEY,
        address text NOT NULL,
        http_address text NOT NULL,
        role text NOT NULL,
        epoch bigint NOT NULL,
        last_sequence bigint NOT NULL,
        started_at timestamptz NOT NULL,
        heartbeat_at timestamptz NOT NULL)
      """,
      """
      CREATE FUNCTION gps_batch_committed() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_notify('gps_log', NEW.last_seq::text); RETURN NULL; END $$
      """,
      """
      CREATE TRIGGER gps_batches_notify AFTER INSERT ON gps_batches
      FOR EACH ROW EXECUTE FUNCTION gps_batch_committed()
      """,
    ],
    // 2: retention. Where the log begins once its head is archived, the run index's checkpoint a
    // new copy starts from (in parts, each with its SHA-256), and an archive's intent.
    [
      """
      CREATE TABLE gps_anchor (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        first_seq bigint NOT NULL CHECK (first_seq > 1),
        anchor bytea NOT NULL,
        deleted boolean NOT NULL,
        epoch bigint NOT NULL,
        archived_at timestamptz NOT NULL DEFAULT clock_timestamp())
      """,
      """
      CREATE TABLE gps_checkpoint (
        part integer PRIMARY KEY CHECK (part >= 0),
        sha256 bytea NOT NULL CHECK (length(sha256) = 32),
        bytes bytea NOT NULL)
      """,
      """
      CREATE TABLE gps_archive_intent (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        intent bytea NOT NULL,
        epoch bigint NOT NULL)
      """,
    ],
  ]
}
