import GPSModel

/// The run index's file, `DATA/index/runs.db` (SQLite, WAL): every run of the log as of one
/// sequence, the checkpoint. Terminal runs are in `runs`, indexed for listing; the others are in
/// `active`, which the queue loads whole at startup. A projection of the log: written only from
/// durable events, rebuilt from the log when it is missing, damaged or written by another version.
///
/// One connection, used by one thread at a time (hence unchecked): the indexer writes through its
/// own, the queue reads through another under a lock.
final class RunStore: @unchecked Sendable {
  static let formatVersion: Int64 = 4
  let connection: SQLiteConnection
  /// The `names` table both ways (strings that repeat in every run: see
  /// ``Run/indexRecord(columns:name:)``). Its rows never change, so these only grow; a write
  /// that is rolled back empties them (the names it added are gone).
  var nameIDs: [String: Int64] = [:]
  var namesByID: [Int64: String] = [:]
  /// Why opening removed the file and started an empty index, if it did.
  private(set) var recreatedBecause: String?

  /// Where the index of the data directory `directory` lives.
  static func path(in directory: String) -> String { directory + "/index/runs.db" }

  /// Opens (creating when missing) the index of `directory`. One of another format is removed and
  /// created anew: it is derived, so the log rebuilds it.
  /// `schema` false: a reader's connection, which leaves the file as the writer made it.
  init(directory: String, fileSystem: any FileSystem, schema: Bool = true) throws(QueueError) {
    let path = Self.path(in: directory)
    if schema { try fileSystem.createDirectory(directory + "/index") }
    var connection = try SQLiteConnection(path: path)
    if schema {
      let version = try? Self.version(of: connection)
      if let damage = Self.rebuildMark(directory: directory, fileSystem: fileSystem) {
        connection = try Self.recreate(path: path, fileSystem: fileSystem)
        try? fileSystem.remove(Self.rebuildMarkPath(directory))
        recreatedBecause = damage
      } else if let version, version != Self.formatVersion {
        connection = try Self.recreate(path: path, fileSystem: fileSystem)
        recreatedBecause = "the run index was written by another version of GPS (format \(version))"
      } else if version == nil {
        do throws(QueueError) {
          try Self.createSchema(connection)
        } catch {
          connection = try Self.recreate(path: path, fileSystem: fileSystem)
          recreatedBecause = "the run index was damaged (\(error.message))"
        }
      }
    }
    self.connection = connection
  }

  static func rebuildMarkPath(_ directory: String) -> String { directory + "/index/REBUILD" }

  /// Asks the next open to rebuild the index from the log: a read found it damaged. Best effort
  /// (the damage is reported either way).
  static func markForRebuild(directory: String, because reason: String, fileSystem: any FileSystem) {
    try? fileSystem.writeAtomically(rebuildMarkPath(directory), contents: Array(reason.utf8))
  }

  /// Why the index must be rebuilt, when a read found it damaged.
  private static func rebuildMark(directory: String, fileSystem: any FileSystem) -> String? {
    let path = rebuildMarkPath(directory)
    guard (try? fileSystem.size(of: path)) ?? nil != nil, let bytes = try? fileSystem.read(path, from: 0) else {
      return nil
    }
    return String(decoding: bytes, as: UTF8.self)
  }

  /// Removes the index file (and its WAL) and creates an empty one.
  private static func recreate(path: String, fileSystem: any FileSystem) throws(QueueError) -> SQLiteConnection {
    try removeFiles(at: path, fileSystem: fileSystem)
    let connection = try SQLiteConnection(path: path)
    try createSchema(connection)
    return connection
  }

  /// The index file and SQLite's files beside it (WAL and shared memory), as suffixes of its path.
  static let fileSuffixes = ["", "-wal", "-shm"]

  static func removeFiles(at path: String, fileSystem: any FileSystem) throws(QueueError) {
    for suffix in fileSuffixes where try fileSystem.size(of: path + suffix) != nil {
      try fileSystem.remove(path + suffix)
    }
  }

  /// The format the file was written in, or nil when it has none.
  func formatVersion() throws(QueueError) -> Int64? { try Self.version(of: connection) }

  private static func version(of connection: SQLiteConnection) throws(QueueError) -> Int64? {
    let statement = try connection.statement("SELECT value FROM meta WHERE key = 'format'")
    defer { statement.reset() }
    guard try statement.step() else { return nil }
    return statement.int(0)
  }

  private static func createSchema(_ connection: SQLiteConnection) throws(QueueError) {
    // WAL: readers see the last commit while the indexer writes. NORMAL: a commit is not synced
    // (only checkpoints are); a power cut may lose the last commits, which the log replays.
    try connection.execute("PRAGMA journal_mode = WAL")
    try connection.execute(
      """
      PRAGMA synchronous = NORMAL;
      BEGIN;
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value ANY, sum INTEGER) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, sum INTEGER);
      CREATE TABLE IF NOT EXISTS runs (
        seq INTEGER PRIMARY KEY, id BLOB NOT NULL, state INTEGER NOT NULL, deployment INTEGER NOT NULL,
        enqueued INTEGER NOT NULL, key TEXT, data BLOB NOT NULL, sum INTEGER NOT NULL);
      CREATE UNIQUE INDEX IF NOT EXISTS runs_id ON runs (id);
      CREATE INDEX IF NOT EXISTS runs_state ON runs (state, seq);
      CREATE INDEX IF NOT EXISTS runs_deployment ON runs (deployment, state, seq);
      CREATE INDEX IF NOT EXISTS runs_key ON runs (key) WHERE key IS NOT NULL;
      CREATE TABLE IF NOT EXISTS tags (tag TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (tag, seq)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS active (seq INTEGER PRIMARY KEY, data BLOB NOT NULL, sum INTEGER NOT NULL);
      INSERT OR REPLACE INTO meta (key, value) VALUES ('format', \(formatVersion));
      COMMIT;
      """)
  }

  /// Opens an existing connection's file in WAL mode with the writer's settings.
  func configureForWriting() throws(QueueError) {
    try connection.execute("PRAGMA synchronous = NORMAL; PRAGMA cache_size = -16384")
  }

  // MARK: - The checkpoint

  /// The point of the log the index holds, and the queue-wide state at that point.
  struct Checkpoint {
    /// Every event up to this sequence is in the index; 0: none.
    var sequence: UInt64 = 0
    /// SHA-256 of the batch that ends at `sequence`: the index belongs to this log.
    var batchHash: [UInt8] = []
    var time = Timestamp.zero
    /// Runs in each state, retired runs included.
    var counts = StateCounts()
    var deployments: [String: [DeploymentVersion]] = [:]
    var handOvers: [String: DeploymentHandOver] = [:]

    /// The loss when the log ends at `last`, before the checkpoint: the index covers events
    /// the log no longer has (a segment deleted or truncated).
    func loss(logEndsAt last: UInt64) -> QueueError? {
      guard sequence > last else { return nil }
      return QueueError(
        code: .dataLost,
        message:
          "sequences \(last + 1)–\(sequence) are missing: the run index covers them but the log ends at sequence \(last); a segment file was deleted or truncated",
        missing: (last + 1)...sequence)
    }
  }

  func checkpoint() throws(QueueError) -> Checkpoint {
    var checkpoint = Checkpoint()
    let statement = try connection.statement("SELECT key, value, sum FROM meta")
    while try statement.step() {
      let key = statement.string(0)
      if key != "format" {
        var sum = RowSum()
        sum.add(key)
        if key == "hash" || key == "counts" || key == "deployments" {
          sum.add(statement.blob(1))
        } else {
          sum.add(statement.int(1))
        }
        guard !statement.isNull(2), sum.value == statement.int(2) else {
          statement.reset()
          throw Self.damagedRow("its checkpoint's \(key)")
        }
      }
      switch key {
      case "sequence": checkpoint.sequence = UInt64(bitPattern: statement.int(1))
      case "hash": checkpoint.batchHash = statement.blob(1)
      case "time": checkpoint.time = Timestamp(micros: statement.int(1))
      case "counts":
        var reader = SnapshotReader(bytes: statement.blob(1))
        for state in RunState.allCases {
          guard let count: Int64 = reader.get() else { throw Self.damaged("its counts") }
          checkpoint.counts[state] = Int(count)
        }
      case "deployments":
        var reader = SnapshotReader(bytes: statement.blob(1))
        guard let (deployments, handOvers) = reader.getDeployments() else { throw Self.damaged("its deployments") }
        checkpoint.deployments = deployments
        checkpoint.handOvers = handOvers
      default: break
      }
    }
    return checkpoint
  }

  static func damaged(_ what: String) -> QueueError {
    QueueError(code: .corrupt, message: "the run index is damaged (\(what) do not decode); it is rebuilt from the log")
  }

  /// How every message of a damaged row begins.
  static let damageText = QueueError.runIndexDamage

  /// A row whose checksum does not match its contents: damaged inside valid SQLite pages.
  static func damagedRow(_ what: String) -> QueueError {
    QueueError(
      code: .corrupt,
      message:
        "\(damageText)\(what) fails its checksum; nothing is answered from it, and the index is rebuilt from the log at the next open"
    )
  }

  /// Every run that was not terminal at the checkpoint.
  func activeRuns() throws(QueueError) -> [Run] {
    var runs: [Run] = []
    let statement = try connection.statement("SELECT seq, data, sum FROM active ORDER BY seq")
    defer { statement.reset() }
    while try statement.step() {
      let data = statement.blob(1)
      guard Self.activeSum(seq: statement.int(0), data: data) == statement.int(2) else {
        throw Self.damagedRow("the active run enqueued at sequence \(statement.int(0))")
      }
      runs.append(try decode(data, columns: nil))
    }
    return runs
  }

  // MARK: - Writing

  /// What one commit of the indexer changes.
  struct Changes {
    /// Runs now terminal: into `runs` (replacing their row), out of `active`.
    var terminal: [Run] = []
    /// Runs not terminal: into `active`.
    var active: [Run] = []
    /// Enqueue sequences of runs no longer active (they are in `terminal`).
    var leftActive: [UInt64] = []
    /// Enqueue sequences of terminal runs that were retried, so active again.
    var revived: [UInt64] = []
    var deploymentsChanged = false
  }

  func write(_ changes: Changes, checkpoint: Checkpoint) throws(QueueError) {
    do throws(QueueError) {
      try writeTransaction(changes, checkpoint: checkpoint)
    } catch {
      nameIDs = [:]
      namesByID = [:]
      throw error
    }
  }

  private func writeTransaction(_ changes: Changes, checkpoint: Checkpoint) throws(QueueError) {
    try connection.transaction { () throws(QueueError) in
      for seq in changes.leftActive {
        try connection.statement("DELETE FROM active WHERE seq = ?1").bind(1, Int64(seq)).run()
      }
      for seq in changes.revived {
        try connection.statement("DELETE FROM runs WHERE seq = ?1").bind(1, Int64(seq)).run()
        try connection.statement("DELETE FROM tags WHERE seq = ?1").bind(1, Int64(seq)).run()
      }
      for run in changes.active {
        let data = try run.indexRecord(columns: false, name: nameID)
        let seq = Int64(run.firstSequence)
        try connection.statement("INSERT OR REPLACE INTO active (seq, data, sum) VALUES (?1, ?2, ?3)")
          .bind(1, seq).bind(2, data).bind(3, Self.activeSum(seq: seq, data: data)).run()
      }
      for run in changes.terminal {
        let insert = try connection.statement(
          "INSERT OR REPLACE INTO runs (seq, id, state, deployment, enqueued, key, data, sum) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        )
        let row = RunRow(
          seq: Int64(run.firstSequence), id: run.id.bytes, state: Int64(run.state.index),
          deployment: Int64(try nameID(run.deployment)), enqueued: run.enqueuedAt.micros,
          key: run.idempotencyKey.isEmpty ? nil : run.idempotencyKey,
          data: try run.indexRecord(columns: true, name: nameID))
        insert.bind(1, row.seq).bind(2, row.id).bind(3, row.state).bind(4, row.deployment).bind(5, row.enqueued)
        if let key = row.key { insert.bind(6, key) } else { insert.bindNull(6) }
        try insert.bind(7, row.data).bind(8, row.sum).run()
        for tag in Set(run.tags) {
          try connection.statement("INSERT OR IGNORE INTO tags (tag, seq) VALUES (?1, ?2)")
            .bind(1, tag).bind(2, Int64(run.firstSequence)).run()
        }
      }
      let meta = try connection.statement("INSERT OR REPLACE INTO meta (key, value, sum) VALUES (?1, ?2, ?3)")
      func put(_ key: String, _ value: Int64) throws(QueueError) {
        var sum = RowSum()
        sum.add(key)
        sum.add(value)
        try meta.bind(1, key).bind(2, value).bind(3, sum.value).run()
      }
      func put(_ key: String, _ value: [UInt8]) throws(QueueError) {
        var sum = RowSum()
        sum.add(key)
        sum.add(value)
        try meta.bind(1, key).bind(2, value).bind(3, sum.value).run()
      }
      try put("sequence", Int64(bitPattern: checkpoint.sequence))
      try put("hash", checkpoint.batchHash)
      try put("time", checkpoint.time.micros)
      var counts = SnapshotWriter()
      for state in RunState.allCases { counts.put(Int64(checkpoint.counts[state])) }
      try put("counts", counts.bytes)
      if changes.deploymentsChanged {
        var deployments = SnapshotWriter()
        deployments.putDeployments(checkpoint.deployments, handOvers: checkpoint.handOvers)
        try put("deployments", deployments.bytes)
      }
    }
  }

  /// The number of `name` in the names table, added when it is new; 0 for the empty string.
  private func nameID(_ name: String) throws(QueueError) -> UInt64 {
    if name.isEmpty { return 0 }
    if let id = nameIDs[name] { return UInt64(id) }
    try connection.statement("INSERT OR IGNORE INTO names (name) VALUES (?1)").bind(1, name).run()
    let inserted = try connection.statement("SELECT id FROM names WHERE name = ?1").bind(1, name)
    defer { inserted.reset() }
    guard try inserted.step() else { throw Self.damaged("its names") }
    let id = inserted.int(0)
    try connection.statement("UPDATE names SET sum = ?2 WHERE id = ?1").bind(1, id)
      .bind(2, Self.nameSum(id: id, name: name)).run()
    nameIDs[name] = id
    namesByID[id] = name
    return UInt64(id)
  }

  func lookUpName(_ name: String) throws(QueueError) -> Int64? {
    if let id = nameIDs[name] { return id }
    let statement = try connection.statement("SELECT id, sum FROM names WHERE name = ?1").bind(1, name)
    defer { statement.reset() }
    guard try statement.step() else { return nil }
    let id = statement.int(0)
    guard statement.int(1) == Self.nameSum(id: id, name: name) else { throw Self.damagedRow("the name \(id)") }
    nameIDs[name] = id
    namesByID[id] = name
    return id
  }

  /// Reads the whole names table (a few rows per deployment) into the caches.
  func loadNames() throws(QueueError) {
    let statement = try connection.statement("SELECT id, name, sum FROM names")
    defer { statement.reset() }
    while try statement.step() {
      let (id, name) = (statement.int(0), statement.string(1))
      guard statement.int(2) == Self.nameSum(id: id, name: name) else { throw Self.damagedRow("the name \(id)") }
      nameIDs[name] = id
      namesByID[id] = name
    }
  }
}

extension RunState {
  /// The terminal states.
  static let terminal: Set<RunState> = Set(allCases.filter(\.isTerminal))
}

/// The columns of a row of `runs`, as stored.
struct RunRow {
  var seq: Int64
  var id: [UInt8]
  var state: Int64
  var deployment: Int64
  var enqueued: Int64
  var key: String?
  var data: [UInt8]

  /// The checksum the row carries: of every column.
  var sum: Int64 {
    var sum = RowSum()
    sum.add(seq)
    sum.add(id)
    sum.add(state)
    sum.add(deployment)
    sum.add(enqueued)
    if let key { sum.add(key) } else { sum.add(Int64(-1)) }
    sum.add(data)
    return sum.value
  }
}

/// The checksum of an index row: CRC32C over its columns, each integer as 8 little-endian bytes
/// and each text or blob after its length, so that different rows never feed it the same bytes.
/// It finds damage inside pages SQLite itself finds sound (`integrity_check` checks structure,
/// not contents).
struct RowSum {
  private var crc: UInt32 = 0

  mutating func add(_ value: Int64) {
    withUnsafeBytes(of: value.littleEndian) { crc = CRC32C.checksum($0, continuing: crc) }
  }

  mutating func add(_ bytes: [UInt8]) {
    add(Int64(bytes.count))
    crc = CRC32C.checksum(bytes, continuing: crc)
  }

  mutating func add(_ text: String) { add(Array(text.utf8)) }

  var value: Int64 { Int64(crc) }
}
