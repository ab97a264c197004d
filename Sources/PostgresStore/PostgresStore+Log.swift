import Foundation
package import GPSModel
import Logging
import NIOCore
import PostgresNIO
package import Queue
import Synchronization

// The log: one row per batch, inserted under the leader's epoch; read in order.
extension PostgresStore {
  // MARK: The log

  /// The last stored batch: its last sequence and hash (nil: the log is empty).
  package func lastBatch() async throws(QueueError) -> (sequence: UInt64, hash: [UInt8])? {
    try await using("reader", writable: false, "read its last batch") {
      connection -> (sequence: UInt64, hash: [UInt8])? in
      let rows = try await connection.query(
        "SELECT last_seq, hash FROM gps_batches ORDER BY last_seq DESC LIMIT 1", logger: logger
      ).collect()
      guard let row = rows.first else { return nil }
      let (sequence, hash) = try row.decode((Int64, ByteBuffer).self)
      return (UInt64(sequence), Array(hash.readableBytesView))
    }
  }

  /// The hash of the batch that ends at `sequence`, if one does.
  package func hash(ofBatchEndingAt sequence: UInt64) async throws(QueueError) -> [UInt8]? {
    try await using("reader", writable: false, "read a batch's hash") { connection in
      let rows = try await connection.query(
        "SELECT hash FROM gps_batches WHERE last_seq = \(Int64(clamping: sequence))", logger: logger
      ).collect()
      return try rows.first.map { Array(try $0.decode(ByteBuffer.self).readableBytesView) }
    }
  }

  /// Up to `limit` batches after `sequence`, in order, each checked (checksum, length).
  package func batches(after sequence: UInt64, limit: Int = 256) async throws(QueueError) -> [SealedBatch] {
    let frames = try await using("reader", writable: false, "read batches") { connection in
      var frames: [[UInt8]] = []
      let rows = try await connection.query(
        """
        SELECT frame FROM gps_batches WHERE first_seq > \(Int64(clamping: sequence))
        ORDER BY first_seq LIMIT \(limit)
        """, logger: logger)
      for try await frame in rows.decode(ByteBuffer.self) { frames.append(Array(frame.readableBytesView)) }
      return frames
    }
    var batches: [SealedBatch] = []
    var expected = sequence + 1
    for frame in frames {
      let batch = try SealedBatch(frame: frame)
      if batch.firstSequence > expected, expected == sequence + 1, let stored = try await anchor(),
        stored.anchor.firstSequence > expected
      {
        throw QueueError(
          code: .dataLost,
          message:
            "the store \(location) archived its log up to sequence \(stored.anchor.firstSequence - 1) while this copy of it stood at \(sequence): start this server again on an empty --data-dir (a new copy starts from the store's checkpoint)",
          missing: expected...(stored.anchor.firstSequence - 1))
      }
      guard batch.firstSequence == expected else {
        throw QueueError(
          code: .corrupt,
          message:
            "the store's log has a gap: after sequence \(expected - 1) its next batch begins at \(batch.firstSequence)",
          missing: expected...(batch.firstSequence - 1))
      }
      expected = batch.lastSequence + 1
      batches.append(batch)
    }
    return batches
  }

  /// Inserts a batch under the leader's epoch, in one statement that also checks that it
  /// continues the stored log. Throws ``QueueError/Code-swift.struct/fenced`` when another server
  /// leads now. When the connection is lost mid-statement it learns whether the batch was stored
  /// (waiting, under the leader's row lock, for the lost statement to end) before it answers.
  package func insert(
    _ batch: SealedBatch, epoch: Int64, serverID: String, patience: Duration = .seconds(10), uncertain: Bool = false
  ) async throws(QueueError) {
    guard batch.lastSequence < UInt64(Int64.max) else {
      throw QueueError(code: .invalidArgument, message: "sequence \(batch.lastSequence) does not fit the store")
    }
    // A lost connection, or a database that cannot be reached for a moment (its own failover:
    // the URL's next host is promoted), is waited for up to `patience`. Once it is known that a
    // batch whose statement was cut off was not stored, it is inserted again: the same row, so
    // never twice.
    let deadline = ContinuousClock.now + patience
    var pause = Duration.milliseconds(100)
    var uncertain = uncertain
    var problem = ""
    while true {
      do {
        if uncertain, try await wasStored(batch) { return }
        uncertain = false
        if try await insertOnce(batch, epoch: epoch, serverID: serverID) { return }
        try await refusal(of: batch, epoch: epoch, serverID: serverID)
      } catch let error as QueueError where error.code == .unavailable {
        problem = error.message
      } catch let error as QueueError {
        throw error
      } catch {
        drop("writer")
        guard Self.isConnectionLoss(error) else {
          throw QueueError(
            code: .io, message: "the store \(location) refused batch \(batch.firstSequence): \(Self.describe(error))",
            cause: error)
        }
        uncertain = true
        problem = Self.describe(error)
        logger.warning(
          "lost the connection to the store while committing a batch; learning whether it was committed",
          metadata: ["batch": "\(batch.firstSequence)", "error": "\(problem)"])
      }
      guard ContinuousClock.now + pause < deadline else {
        throw QueueError(
          code: .unavailable,
          message:
            "could not commit batch \(batch.firstSequence) to the store \(location) within \(patience) (\(problem)); nothing of it was acknowledged"
        )
      }
      try? await Task.sleep(for: pause)
      pause = min(pause * 2, .seconds(1))
    }
  }

  /// The insert, on the writer's connection: true when it stored the batch.
  func insertOnce(_ batch: SealedBatch, epoch: Int64, serverID: String) async throws -> Bool {
    let connection = try await connection("writer")
    let rows = try await connection.query(Self.insertion(batch, epoch: epoch, serverID: serverID), logger: logger)
      .collect()
    return rows.count == 1
  }

  /// The fenced insert of a batch: stored only under this leader's epoch, and only when it
  /// continues the stored log.
  static func insertion(_ batch: SealedBatch, epoch: Int64, serverID: String) -> PostgresQuery {
    let first = Int64(batch.firstSequence)
    return """
      INSERT INTO gps_batches (first_seq, last_seq, epoch, hash, frame)
      SELECT \(first), \(Int64(batch.lastSequence)), \(epoch), \(ByteBuffer(bytes: batch.hash)), \(ByteBuffer(bytes: batch.frame))
      FROM gps_leader
      WHERE singleton AND epoch = \(epoch) AND server_id = \(serverID)
        AND (SELECT coalesce(max(last_seq), (SELECT first_seq - 1 FROM gps_anchor), 0) FROM gps_batches) = \(first - 1)
      FOR SHARE
      RETURNING first_seq
      """
  }

  /// The writer's connection when it is open (nil: connect on the slow path).
  var openWriter: PostgresConnection? {
    connections.withLock { $0["writer"] }.flatMap { $0.isClosed ? nil : $0 }
  }

  /// After a lost connection: whether the batch was stored. The leader's row is locked for update,
  /// which waits for the lost statement (it holds that row for share) to commit or roll back.
  func wasStored(_ batch: SealedBatch) async throws(QueueError) -> Bool {
    let stored = try await using("writer", "learn whether batch \(batch.firstSequence) was committed") { connection in
      try await connection.withTransaction(logger: logger) { connection in
        try await connection.query("SELECT epoch FROM gps_leader WHERE singleton FOR UPDATE", logger: logger)
        let rows = try await connection.query(
          "SELECT hash FROM gps_batches WHERE first_seq = \(Int64(batch.firstSequence))", logger: logger
        ).collect()
        return try rows.first.map { Array(try $0.decode(ByteBuffer.self).readableBytesView) }
      }
    }
    guard let stored else { return false }
    guard stored == batch.hash else {
      throw QueueError(
        code: .fenced,
        message:
          "the store \(location) holds another batch at sequence \(batch.firstSequence) than this server committed: another server wrote it; this server's write was refused"
      )
    }
    return true
  }

  /// Why an insert stored nothing: another leader, or a log that does not end where the batch
  /// begins.
  func refusal(of batch: SealedBatch, epoch: Int64, serverID: String) async throws(QueueError) -> Never {
    let leader = try await leader()
    if leader.epoch != epoch || leader.serverID != serverID {
      throw QueueError(
        code: .fenced,
        message:
          "this server's leadership (epoch \(epoch)) is over: \(leader.address.isEmpty ? "another server" : leader.address) leads the store at epoch \(leader.epoch); its write was refused"
      )
    }
    let last = try await lastBatch()?.sequence ?? 0
    throw QueueError(
      code: .corrupt,
      message:
        "the store's log ends at sequence \(last) but this server's batch begins at \(batch.firstSequence): the data directory is not a copy of this store's log"
    )
  }

  /// Calls `committed` at every batch the store commits (LISTEN on the channel its trigger
  /// notifies), on a connection of its own, until cancelled or the connection is lost.
  package func listenForBatches(_ committed: @escaping @Sendable () -> Void) async throws(QueueError) {
    let connection = try await connect(writable: false)
    defer { Self.dispose(connection) }
    do {
      try await connection.listen(on: "gps_log") { notifications in
        for try await _ in notifications { committed() }
      }
    } catch {
      throw QueueError(
        code: .unavailable, message: "listening to the store \(location) stopped: \(Self.describe(error))", cause: error
      )
    }
  }
}
