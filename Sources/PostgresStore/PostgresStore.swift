import Foundation
package import GPSModel
package import Logging
import NIOCore
import NIOPosix
import NIOSSL
package import PostgresNIO
import Queue
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
  package static var schemaVersion: Int { migrations.count }

  let connections = Mutex<[String: PostgresConnection]>([:])
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
}
