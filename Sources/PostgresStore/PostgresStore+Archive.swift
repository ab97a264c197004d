import Foundation
package import GPSModel
import Logging
import NIOCore
import PostgresNIO
package import Queue

// Retention: an archive's intent, the log's anchor, and the run index's checkpoint a new copy of
// the log starts from once the batches before the anchor are gone.
extension PostgresStore {
  // MARK: Retention

  /// The size of one part of a stored checkpoint.
  static let checkpointPart = 4 << 20

  /// The store's anchor, and whether the archived batches were deleted rather than kept in files.
  package func anchor() async throws(QueueError) -> (anchor: LogAnchor, deleted: Bool)? {
    let row = try await using("reader", writable: false, "read where its log begins") { connection in
      try await connection.query("SELECT anchor, deleted FROM gps_anchor", logger: logger).collect().first
        .map { try $0.decode((ByteBuffer, Bool).self) }
    }
    guard let (bytes, deleted) = row else { return nil }
    return (try LogAnchor.decode(Array(bytes.readableBytesView), from: "the store \(location)'s anchor"), deleted)
  }

  /// The last sequence every live standby reported copying (live: a heartbeat within three leases,
  /// or 30 s); nil when no standby is live.
  package func standbysHave() async throws(QueueError) -> UInt64? {
    try await using("reader", writable: false, "read its standbys") { connection in
      let rows = try await connection.query(
        """
        SELECT min(s.last_sequence) FROM gps_servers s, gps_leader l
        WHERE l.singleton AND s.role = 'standby'
          AND s.heartbeat_at > clock_timestamp() - greatest(interval '30 seconds', 3 * (l.lease_until - l.renewed_at))
        """, logger: logger
      ).collect()
      return try rows.first?.decode(Int64?.self).map { UInt64(max(0, $0)) }
    }
  }

  package func archiveIntent() async throws(QueueError) -> ArchiveIntent? {
    let bytes = try await using("reader", writable: false, "read an archive's intent") { connection in
      try await connection.query("SELECT intent FROM gps_archive_intent", logger: logger).collect().first
        .map { Array(try $0.decode(ByteBuffer.self).readableBytesView) }
    }
    guard let bytes else { return nil }
    guard let intent = ArchiveIntent(encoded: bytes) else {
      throw QueueError(code: .corrupt, message: "the store \(location)'s archive intent does not decode")
    }
    return intent
  }

  /// Records (or clears) an archive's intent, under the leader's epoch.
  package func recordArchiveIntent(_ intent: ArchiveIntent?, epoch: Int64, serverID: String) async throws(QueueError) {
    try await using("archive", "record an archive's intent") { connection in
      try await connection.withTransaction(logger: logger) { connection in
        try await Self.checkLead(connection, epoch: epoch, serverID: serverID, logger: logger, location: location)
        try await connection.query("DELETE FROM gps_archive_intent", logger: logger)
        if let intent {
          try await connection.query(
            "INSERT INTO gps_archive_intent (intent, epoch) VALUES (\(ByteBuffer(bytes: intent.encoded)), \(epoch))",
            logger: logger)
        }
      }
    }
  }

  /// In one transaction under the leader's epoch: the run index copy at `checkpointFile` (in
  /// parts), `anchor`, the removal of the batches before it, and the intent cleared.
  package func commitArchive(
    anchor: LogAnchor, deleted: Bool, checkpointFile: String, epoch: Int64, serverID: String
  ) async throws(QueueError) {
    guard let file = FileHandle(forReadingAtPath: checkpointFile) else {
      throw QueueError(code: .io, message: "the run index copy \(checkpointFile) cannot be read")
    }
    defer { try? file.close() }
    try await using("archive", "commit an archive") { connection in
      try await connection.withTransaction(logger: logger) { connection in
        try await Self.checkLead(connection, epoch: epoch, serverID: serverID, logger: logger, location: location)
        try await connection.query("DELETE FROM gps_checkpoint", logger: logger)
        var part = 0
        while let data = try file.read(upToCount: Self.checkpointPart), !data.isEmpty {
          let bytes = Array(data)
          let hash = bytes.withUnsafeBytes { LogFormat.hash(ofFrame: $0) }
          try await connection.query(
            """
            INSERT INTO gps_checkpoint (part, sha256, bytes)
            VALUES (\(part), \(ByteBuffer(bytes: hash)), \(ByteBuffer(bytes: bytes)))
            """, logger: logger)
          part += 1
        }
        try await connection.query(
          """
          INSERT INTO gps_anchor (singleton, first_seq, anchor, deleted, epoch)
          VALUES (true, \(Int64(anchor.firstSequence)), \(ByteBuffer(bytes: anchor.encoded)), \(deleted), \(epoch))
          ON CONFLICT (singleton) DO UPDATE SET first_seq = EXCLUDED.first_seq, anchor = EXCLUDED.anchor,
            deleted = EXCLUDED.deleted, epoch = EXCLUDED.epoch, archived_at = clock_timestamp()
          """, logger: logger)
        try await connection.query(
          "DELETE FROM gps_batches WHERE last_seq < \(Int64(anchor.firstSequence))", logger: logger)
        try await connection.query("DELETE FROM gps_archive_intent", logger: logger)
      }
    }
  }

  /// Writes the stored checkpoint (the run index as of the last archive) to `path`, each part
  /// checked against its SHA-256.
  package func downloadCheckpoint(to path: String) async throws(QueueError) {
    guard FileManager.default.createFile(atPath: path, contents: nil), let file = FileHandle(forWritingAtPath: path)
    else {
      throw QueueError(code: .io, message: "cannot create \(path) for the store's checkpoint")
    }
    defer { try? file.close() }
    try await using("reader", writable: false, "read its checkpoint") { connection in
      var expected = 0
      let rows = try await connection.query(
        "SELECT part, sha256, bytes FROM gps_checkpoint ORDER BY part", logger: logger)
      for try await (part, hash, bytes) in rows.decode((Int, ByteBuffer, ByteBuffer).self) {
        let data = Array(bytes.readableBytesView)
        guard part == expected, data.withUnsafeBytes({ LogFormat.hash(ofFrame: $0) }) == Array(hash.readableBytesView)
        else {
          throw QueueError(
            code: .corrupt,
            message:
              "the store \(location)'s checkpoint is damaged at part \(part): it does not match its SHA-256, or a part is missing"
          )
        }
        try file.write(contentsOf: data)
        expected += 1
      }
      guard expected > 0 else {
        throw QueueError(
          code: .corrupt,
          message: "the store \(location) has an anchor but no checkpoint: its archive tables are damaged")
      }
      try file.synchronize()
    }
  }

  /// Throws ``QueueError/Code-swift.struct/fenced`` unless `serverID` leads at `epoch`; holds the
  /// leader's row for share until the transaction ends, as a batch insert does.
  static func checkLead(
    _ connection: PostgresConnection, epoch: Int64, serverID: String, logger: Logger, location: StoreLocation
  ) async throws {
    let rows = try await connection.query(
      """
      SELECT 1 FROM gps_leader WHERE singleton AND epoch = \(epoch) AND server_id = \(serverID) FOR SHARE
      """, logger: logger
    ).collect()
    guard !rows.isEmpty else {
      throw QueueError(
        code: .fenced,
        message: "this server no longer leads the store \(location) (epoch \(epoch) is over): nothing was archived")
    }
  }
}
