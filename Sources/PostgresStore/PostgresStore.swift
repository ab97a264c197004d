import Foundation
package import GPSModel
package import Logging
import NIOCore
import NIOPosix
import NIOSSL
package import PostgresNIO
package import Queue
import Synchronization

/// The log, the leader's record and the servers' registry of one GPS cluster in a PostgreSQL
/// database.
///
/// The log is stored as the segment files store it: one row per batch, the frame as it is (CRC,
/// LZ4 body, the previous batch's hash), so the hash chain is the file log's and a log moves
/// between the two without a byte changing. A batch is inserted only together with a check of the
/// leader's epoch in the same statement (it locks the leader's row for share; a takeover updates
/// that row, so it waits for every insert of the old epoch and every later one of that epoch
/// finds it changed), and only when it continues the stored log.
package final class PostgresStore: Sendable {
  package let location: StoreLocation
  package let password: StorePassword
  package let logger: Logger
  /// The cluster's id, created with the schema: a data directory copied from one cluster's store
  /// is refused by another's.
  package let clusterID: String
  /// The schema version this build writes.
  package static let schemaVersion = 1

  private let connections = Mutex<[String: PostgresConnection]>([:])
  private let nextConnectionID = Atomic<Int>(1)

  private init(location: StoreLocation, password: StorePassword, logger: Logger, clusterID: String) {
    self.location = location
    self.password = password
    self.logger = logger
    self.clusterID = clusterID
  }

  /// Connects, creates or migrates the schema (refusing one newer than this build's) and reads
  /// the cluster's id.
  package static func open(
    _ location: StoreLocation, password: StorePassword, logger: Logger = Logger(label: "gps.store")
  ) async throws(QueueError) -> PostgresStore {
    let probe = PostgresStore(location: location, password: password, logger: logger, clusterID: "")
    defer { probe.closeAll() }
    let clusterID = try await probe.migrate()
    return PostgresStore(location: location, password: password, logger: logger, clusterID: clusterID)
  }

  /// Closes every connection.
  package func close() {
    closeAll()
  }

  private func closeAll() {
    let open = connections.withLock { connections in
      defer { connections = [:] }
      return Array(connections.values)
    }
    for connection in open { Self.dispose(connection) }
  }

  /// Closes a connection that is no longer used, keeping it alive until it is closed (postgres-nio
  /// requires a connection to be closed before it is released).
  static func dispose(_ connection: PostgresConnection) {
    connection.close().whenComplete { _ in withExtendedLifetime(connection) {} }
  }

  // MARK: Connections

  /// The connection kept for `purpose` (one per purpose, so the writer's statements never wait
  /// behind a reader's), connected anew when it was lost.
  func connection(_ purpose: String, writable: Bool = true) async throws(QueueError) -> PostgresConnection {
    if let open = connections.withLock({ $0[purpose] }), !open.isClosed { return open }
    let connection = try await connect(writable: writable)
    // Two callers may have connected at once: the first one kept is everyone's.
    let (chosen, replaced) = connections.withLock { connections -> (PostgresConnection, PostgresConnection?) in
      if let open = connections[purpose], !open.isClosed { return (open, nil) }
      defer { connections[purpose] = connection }
      return (connection, connections[purpose])
    }
    if chosen !== connection { Self.dispose(connection) }
    if let replaced { Self.dispose(replaced) }
    return chosen
  }

  /// Closes every connection kept (what waits on one fails at once); the next use connects anew.
  /// For a store that stopped answering (a partition leaves connections silent, not closed).
  package func abandonConnections() {
    let all = connections.withLock { connections in
      defer { connections.removeAll() }
      return Array(connections.values)
    }
    for connection in all { Self.dispose(connection) }
  }

  /// Forgets the connection of `purpose` (after an error on it) so the next use connects anew.
  func drop(_ purpose: String) {
    if let dropped = connections.withLock({ $0.removeValue(forKey: purpose) }) { Self.dispose(dropped) }
  }

  /// A new connection to the first host that answers (and, when `writable` or the URL asks for
  /// read-write, accepts writes); one line naming every host's problem otherwise.
  package func connect(writable: Bool = true) async throws(QueueError) -> PostgresConnection {
    var problems: [String] = []
    for host in location.hosts {
      do {
        let connection = try await connect(to: host)
        if writable || location.sessionAttributes != .any {
          let readOnly: Bool?
          do {
            readOnly = try await connection.query(
              "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'", logger: logger
            ).collect().first?.decode(Bool.self)
          } catch {
            Self.dispose(connection)
            throw error
          }
          if readOnly == true {
            Self.dispose(connection)
            problems.append("\(host) accepts no writes (a standby or a read-only server)")
            continue
          }
        }
        return connection
      } catch let error as QueueError {
        problems.append("\(host): \(error.message)")
      } catch {
        problems.append("\(host): \(Self.describe(error))")
      }
    }
    throw QueueError(
      code: .unavailable,
      message:
        "cannot use the store \(location): \(problems.joined(separator: "; ")); check that PostgreSQL runs there, the URL, its TLS settings and the password file"
    )
  }

  private func connect(to host: StoreLocation.Host) async throws -> PostgresConnection {
    let secret = try password.password(host: host, database: location.database, user: location.user)
    var configuration = PostgresConnection.Configuration(
      host: host.name, port: host.port, username: location.user, password: secret, database: location.database,
      tls: try tls(for: host))
    let timeout = location.connectTimeout.components
    configuration.options.connectTimeout = .seconds(timeout.seconds)
    configuration.options.additionalStartupParameters = [("application_name", location.applicationName)]
    let id = nextConnectionID.add(1, ordering: .relaxed).oldValue
    return try await PostgresConnection.connect(configuration: configuration, id: id, logger: logger)
  }

  private func tls(for host: StoreLocation.Host) throws -> PostgresConnection.Configuration.TLS {
    var configuration = TLSConfiguration.makeClientConfiguration()
    switch location.sslMode {
    case .disable:
      return .disable
    case .allow, .prefer:
      configuration.certificateVerification = .none
      return .prefer(try NIOSSLContext(configuration: configuration))
    case .require:
      configuration.certificateVerification = .none
      if let root = location.sslRootCertificate {
        configuration.trustRoots = .file(root)
        configuration.certificateVerification = .noHostnameVerification
      }
      return .require(try NIOSSLContext(configuration: configuration))
    case .verifyCA, .verifyFull:
      configuration.trustRoots = .file(location.sslRootCertificate ?? "")
      configuration.certificateVerification =
        location.sslMode == .verifyFull ? .fullVerification : .noHostnameVerification
      return .require(try NIOSSLContext(configuration: configuration))
    }
  }

  /// One line for a PostgreSQL or connection error (postgres-nio's own description hides the
  /// server's message).
  package static func describe(_ error: any Error) -> String {
    if let error = error as? QueueError { return error.message }
    if let error = error as? PSQLError {
      if error.code == .sslUnsupported {
        return
          "the server does not speak TLS, which sslmode=require (or verify-ca, verify-full) asks for: enable ssl on the server, or give sslmode=prefer"
      }
      if let tls = tlsProblem(error.underlying) { return tls }
      if let info = error.serverInfo, let message = info[.message] {
        let state = info[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
        return message + state
      }
      if let underlying = error.underlying { return "\(error.code): \(describe(underlying))" }
      return "\(error.code)"
    }
    if let error = error as? PostgresTransactionError {
      for inner in [error.beginError, error.closureError, error.commitError].compactMap({ $0 }) {
        return describe(inner)
      }
    }
    return "\(error)"
  }

  /// A failed TLS handshake in one line: an untrusted certificate names sslrootcert (BoringSSL's
  /// own text is kept short).
  static func tlsProblem(_ error: (any Error)?) -> String? {
    guard let error = error as? NIOSSLError, case .handshakeFailed(let reason) = error else { return nil }
    let text = "\(reason)"
    if text.contains("CERTIFICATE_VERIFY_FAILED") {
      return
        "its TLS certificate is not one the certificate authority in sslrootcert vouches for (or, with sslmode=verify-full, it does not name this host): give sslrootcert the authority that signed it"
    }
    let short = text.range(of: #"OPENSSL_internal:[A-Z_]+"#, options: .regularExpression).map { String(text[$0]) }
    return
      "the TLS handshake failed (\(short.map { $0.replacingOccurrences(of: "OPENSSL_internal:", with: "") } ?? String(text.prefix(120))))"
  }

  /// Whether an error means the connection is gone (the statement's outcome unknown), rather than
  /// the server refusing the statement.
  static func isConnectionLoss(_ error: any Error) -> Bool {
    guard let error = error as? PSQLError else { return !(error is QueueError) }
    return error.serverInfo == nil
  }

  /// Runs `body` on the connection of `purpose`; an error drops the connection (the next use
  /// connects anew) and becomes one line.
  func using<T: Sendable>(
    _ purpose: String, writable: Bool = true, _ what: String,
    _ body: (PostgresConnection) async throws -> T
  ) async throws(QueueError) -> T {
    let connection = try await connection(purpose, writable: writable)
    do {
      return try await body(connection)
    } catch let error as QueueError {
      throw error
    } catch {
      if Self.isConnectionLoss(error) { drop(purpose) }
      throw QueueError(
        code: Self.isConnectionLoss(error) ? .unavailable : .io,
        message: "the store \(location) could not \(what): \(Self.describe(error))", cause: error)
    }
  }

  // MARK: Schema

  /// Creates the schema or brings it to ``schemaVersion``, under a lock so servers starting
  /// together do not race; returns the cluster's id.
  private func migrate() async throws(QueueError) -> String {
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
    ]
  ]

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
  private func insertOnce(_ batch: SealedBatch, epoch: Int64, serverID: String) async throws -> Bool {
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
        AND (SELECT coalesce(max(last_seq), 0) FROM gps_batches) = \(first - 1)
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
  private func wasStored(_ batch: SealedBatch) async throws(QueueError) -> Bool {
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
  private func refusal(of batch: SealedBatch, epoch: Int64, serverID: String) async throws(QueueError) -> Never {
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

/// The log's commits into the store under one leader's epoch (``LogOptions/store``).
///
/// On the log's writer thread: the insert goes straight to the open connection and the thread
/// waits for its answer (no task per batch); anything else (no connection, a lost one, a refusal)
/// takes the slow path, which reconnects, learns whether a cut-off batch was stored, and says why
/// one was refused. One watchdog cuts off a commit that hangs (a partition TCP has not noticed):
/// dropping the connection ends the statement as lost, and the slow path learns whether it landed.
package struct EpochWriter: BatchStore {
  package let store: PostgresStore
  package let epoch: Int64
  package let serverID: String
  /// How long one commit may take before the writer gives up on it (and learns whether it landed).
  package let timeout: Duration
  private let watchdog: Watchdog

  package init(store: PostgresStore, epoch: Int64, serverID: String, timeout: Duration = .seconds(10)) {
    self.store = store
    self.epoch = epoch
    self.serverID = serverID
    self.timeout = timeout
    watchdog = Watchdog(store: store, timeout: timeout)
  }

  package func commit(_ batch: SealedBatch) throws(QueueError) {
    watchdog.started()
    defer { watchdog.ended() }
    var uncertain = false
    if let connection = store.openWriter {
      // Waited for `timeout` at most: a query on a connection that is going away can be left
      // unanswered for good, and the log's writer must not wait for it forever.
      let answered = DispatchSemaphore(value: 0)
      let answer = Mutex<Result<PostgresQueryResult, any Error>?>(nil)
      connection.query(PostgresStore.insertion(batch, epoch: epoch, serverID: serverID), logger: store.logger)
        .whenComplete { result in
          answer.withLock { $0 = result }
          answered.signal()
        }
      let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
      switch answered.wait(timeout: .now() + seconds) == .timedOut ? nil : answer.withLock({ $0 }) {
      case .success(let result) where result.rows.count == 1:
        return
      case .success:
        break
      case .failure(let error):
        store.drop("writer")
        // Refused by the server: the slow path says why; cut off: it learns whether it landed.
        uncertain = PostgresStore.isConnectionLoss(error)
      case nil:
        PostgresStore.dispose(connection)
        store.drop("writer")
        uncertain = true
      }
    }
    let outcome = Mutex<Result<Void, QueueError>?>(nil)
    let done = DispatchSemaphore(value: 0)
    let (store, epoch, serverID, timeout) = (store, epoch, serverID, timeout)
    Task { [uncertain] in
      let result: Result<Void, QueueError>
      do throws(QueueError) {
        try await store.insert(batch, epoch: epoch, serverID: serverID, patience: timeout, uncertain: uncertain)
        result = .success(())
      } catch {
        result = .failure(error)
      }
      outcome.withLock { $0 = result }
      done.signal()
    }
    done.wait()
    try outcome.withLock { $0! }.get()
  }

  /// Drops the writer's connection when a commit has been under way for longer than `timeout`;
  /// one thread per writer, gone with it.
  final class Watchdog: @unchecked Sendable {
    private let since = Mutex<ContinuousClock.Instant?>(nil)

    init(store: PostgresStore, timeout: Duration) {
      let thread = Thread { [weak self] in
        while let watchdog = self {
          let overdue = watchdog.since.withLock { $0.map { ContinuousClock.now - $0 > timeout } ?? false }
          if overdue {
            store.drop("writer")
            watchdog.since.withLock { $0 = nil }
          }
          Thread.sleep(forTimeInterval: 0.25)
        }
      }
      thread.name = "gps-store-watchdog"
      thread.start()
    }

    func started() { since.withLock { $0 = .now } }
    func ended() { since.withLock { $0 = nil } }
  }
}
