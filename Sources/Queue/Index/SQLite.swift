import CSQLite
import Foundation
import GPSModel

/// A thin wrapper of one SQLite connection: prepared statements, typed binds and columns, errors
/// as ``QueueError``. Not thread-safe: each user holds its own connection or a lock around it.
final class SQLiteConnection {
  let path: String
  private let handle: OpaquePointer
  private var statements: [String: Statement] = [:]

  init(path: String) throws(QueueError) {
    self.path = path
    var db: OpaquePointer?
    let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
    let code = sqlite3_open_v2(path, &db, flags, nil)
    guard code == SQLITE_OK, let db else {
      let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
      if let db { sqlite3_close_v2(db) }
      throw QueueError(code: .io, message: "opening the run index \(path) failed: \(message)")
    }
    handle = db
    sqlite3_busy_timeout(db, 5_000)
  }

  deinit {
    statements.removeAll()
    sqlite3_close_v2(handle)
  }

  func failure(_ what: String, _ code: Int32) -> QueueError {
    let message = String(cString: sqlite3_errmsg(handle))
    let kind: QueueError.Code = code == SQLITE_CORRUPT || code == SQLITE_NOTADB ? .corrupt : .io
    return QueueError(code: kind, message: "the run index \(path): \(what) failed: \(message)")
  }

  /// Writes a consistent copy of the database to the new file `path` (`VACUUM INTO`).
  func copy(into path: String) throws(QueueError) {
    try execute("VACUUM INTO '\(path.replacingOccurrences(of: "'", with: "''"))'")
  }

  /// Runs one or more statements without results.
  func execute(_ sql: String) throws(QueueError) {
    let code = sqlite3_exec(handle, sql, nil, nil, nil)
    guard code == SQLITE_OK else { throw failure(String(sql.prefix(60)), code) }
  }

  /// The prepared statement for `sql`, reset and ready to bind (prepared once per connection).
  func statement(_ sql: String) throws(QueueError) -> Statement {
    if let statement = statements[sql] {
      statement.reset()
      return statement
    }
    var pointer: OpaquePointer?
    let code = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &pointer, nil)
    guard code == SQLITE_OK, let pointer else { throw failure("preparing \(sql.prefix(60))", code) }
    let statement = Statement(connection: self, pointer: pointer)
    statements[sql] = statement
    return statement
  }

  /// Resets every statement: a statement left on a row keeps the connection's read transaction
  /// open, so later reads would not see newer commits.
  func endReads() {
    for statement in statements.values { statement.reset() }
  }

  /// Runs `body` in one transaction: committed when it returns, rolled back when it throws.
  func transaction<T>(_ body: () throws(QueueError) -> T) throws(QueueError) -> T {
    try execute("BEGIN IMMEDIATE")
    do {
      let result = try body()
      try execute("COMMIT")
      return result
    } catch {
      try? execute("ROLLBACK")
      throw error
    }
  }

  var changes: Int { Int(sqlite3_changes(handle)) }

  /// One prepared statement. Binds are numbered from 1; columns from 0.
  final class Statement {
    unowned let connection: SQLiteConnection
    let pointer: OpaquePointer

    init(connection: SQLiteConnection, pointer: OpaquePointer) {
      self.connection = connection
      self.pointer = pointer
    }

    deinit { sqlite3_finalize(pointer) }

    func reset() {
      sqlite3_reset(pointer)
      sqlite3_clear_bindings(pointer)
    }

    @discardableResult
    func bind(_ index: Int32, _ value: Int64) -> Statement {
      sqlite3_bind_int64(pointer, index, value)
      return self
    }

    @discardableResult
    func bind(_ index: Int32, _ value: String) -> Statement {
      sqlite3_bind_text(pointer, index, value, -1, SQLITE_TRANSIENT)
      return self
    }

    @discardableResult
    func bind(_ index: Int32, _ value: [UInt8]) -> Statement {
      value.withUnsafeBytes { bytes in
        // A zero-length blob, not NULL, for an empty value.
        _ = sqlite3_bind_blob(
          pointer, index, bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(bytes.count), SQLITE_TRANSIENT)
      }
      return self
    }

    @discardableResult
    func bindNull(_ index: Int32) -> Statement {
      sqlite3_bind_null(pointer, index)
      return self
    }

    /// Advances to the next row: true when there is one.
    func step() throws(QueueError) -> Bool {
      let code = sqlite3_step(pointer)
      switch code {
      case SQLITE_ROW: return true
      case SQLITE_DONE: return false
      default:
        let error = connection.failure("running \(String(cString: sqlite3_sql(pointer)).prefix(60))", code)
        sqlite3_reset(pointer)
        throw error
      }
    }

    /// Runs a statement that returns no rows.
    func run() throws(QueueError) {
      _ = try step()
      sqlite3_reset(pointer)
    }

    func int(_ column: Int32) -> Int64 { sqlite3_column_int64(pointer, column) }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(pointer, column) == SQLITE_NULL }

    func string(_ column: Int32) -> String {
      guard let text = sqlite3_column_text(pointer, column) else { return "" }
      return String(cString: text)
    }

    func blob(_ column: Int32) -> [UInt8] {
      let count = Int(sqlite3_column_bytes(pointer, column))
      guard count > 0, let bytes = sqlite3_column_blob(pointer, column) else { return [] }
      return [UInt8](UnsafeRawBufferPointer(start: bytes, count: count))
    }
  }
}

/// SQLite's "copy the value now" destructor, which the C macro spells as -1.
private let SQLITE_TRANSIENT = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
