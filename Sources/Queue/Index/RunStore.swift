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
  private var nameIDs: [String: Int64] = [:]
  private var namesByID: [Int64: String] = [:]
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

  private func lookUpName(_ name: String) throws(QueueError) -> Int64? {
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
  private func loadNames() throws(QueueError) {
    let statement = try connection.statement("SELECT id, name, sum FROM names")
    defer { statement.reset() }
    while try statement.step() {
      let (id, name) = (statement.int(0), statement.string(1))
      guard statement.int(2) == Self.nameSum(id: id, name: name) else { throw Self.damagedRow("the name \(id)") }
      nameIDs[name] = id
      namesByID[id] = name
    }
  }

  // MARK: - Reading terminal runs

  /// Runs `body` in one read transaction, with the checkpoint sequence that transaction sees.
  func reading<T>(_ body: () throws(QueueError) -> T) throws(QueueError) -> (T, UInt64) {
    try connection.execute("BEGIN")
    defer { try? connection.execute("COMMIT") }
    let statement = try connection.statement("SELECT value FROM meta WHERE key = 'sequence'")
    let sequence = try statement.step() ? UInt64(bitPattern: statement.int(0)) : 0
    statement.reset()
    return (try body(), sequence)
  }

  /// The terminal run with `id`, as of the checkpoint.
  func run(_ id: RunID) throws(QueueError) -> Run? {
    let statement = try connection.statement("SELECT \(Self.row) FROM runs WHERE id = ?1").bind(1, id.bytes)
    // Reset at once: a statement left on a row keeps its read transaction, and later reads
    // would not see the indexer's commits.
    defer { statement.reset() }
    return try statement.step() ? try decodeRow(statement) : nil
  }

  /// The terminal run enqueued at sequence `firstSequence`.
  func run(firstSequence: UInt64) throws(QueueError) -> Run? {
    let statement = try connection.statement("SELECT \(Self.row) FROM runs WHERE seq = ?1")
      .bind(1, Int64(clamping: firstSequence))
    defer { statement.reset() }
    return try statement.step() ? try decodeRow(statement) : nil
  }

  /// The newest terminal run enqueued with idempotency key `key` at sequence `upTo` or before.
  func run(idempotencyKey key: String, upTo: UInt64 = .max) throws(QueueError) -> Run? {
    let statement = try connection.statement(
      "SELECT \(Self.row) FROM runs WHERE key = ?1 AND seq <= ?2 ORDER BY seq DESC LIMIT 1"
    ).bind(1, key).bind(2, Int64(clamping: upTo))
    defer { statement.reset() }
    return try statement.step() ? try decodeRow(statement) : nil
  }

  /// Terminal runs whose id's text starts with `prefix` (hex digits and dashes), enqueued at
  /// sequence `upTo` or before: at most `limit`.
  func runs(idPrefix prefix: String, limit: Int, upTo: UInt64 = .max) throws(QueueError) -> [Run] {
    let hex = prefix.filter { $0 != "-" }
    guard !hex.isEmpty, hex.count <= 32, hex.allSatisfy(\.isHexDigit) else { return [] }
    // The ids that start with these digits lie in [low, high]: the rest filled with 0s and with fs.
    func bytes(_ fill: Character) -> [UInt8] {
      let full = hex + String(repeating: fill, count: 32 - hex.count)
      var result: [UInt8] = []
      var index = full.startIndex
      for _ in 0..<16 {
        let next = full.index(index, offsetBy: 2)
        result.append(UInt8(full[index..<next], radix: 16)!)
        index = next
      }
      return result
    }
    let statement = try connection.statement(
      "SELECT \(Self.row) FROM runs WHERE id BETWEEN ?1 AND ?2 AND seq <= ?4 LIMIT ?3"
    ).bind(1, bytes("0")).bind(2, bytes("f")).bind(3, Int64(limit)).bind(4, Int64(clamping: upTo))
    var runs: [Run] = []
    while try statement.step() { runs.append(try decodeRow(statement)) }
    return runs
  }

  /// Terminal runs matching `query` enqueued at sequence `upTo` or before, newest first: at most
  /// `limit`.
  func runs(matching query: RunQuery, upTo: UInt64, limit: Int) throws(QueueError) -> [Run] {
    let states = query.states.isEmpty ? RunState.terminal : query.states.filter(\.isTerminal)
    guard !states.isEmpty, limit > 0 else { return [] }
    var low: UInt64 = 0
    var high = min(upTo, UInt64(Int64.max))
    if let after = query.enqueuedAfter { low = try firstSequence(enqueuedAtOrAfter: after) }
    if let before = query.enqueuedBefore {
      let first = try firstSequence(enqueuedAtOrAfter: before)
      guard first > 0 else { return [] }
      high = min(high, first - 1)
    }
    guard low <= high else { return [] }
    var deployment: Int64?
    if !query.deployment.isEmpty {
      guard let id = try lookUpName(query.deployment) else { return [] }
      deployment = id
    }
    let range = "seq BETWEEN ?1 AND ?2"
    var statements: [SQLiteConnection.Statement] = []
    if !query.tag.isEmpty {
      var sql =
        "SELECT \(Self.row(of: "r")) FROM tags t JOIN runs r ON r.seq = t.seq WHERE t.tag = ?3 AND t.seq BETWEEN ?1 AND ?2"
      if deployment != nil { sql += " AND r.deployment = ?4" }
      if states.count < RunState.terminal.count {
        sql += " AND r.state IN (\(states.map { String($0.index) }.sorted().joined(separator: ",")))"
      }
      let statement = try connection.statement(sql + " ORDER BY t.seq DESC LIMIT ?5").bind(3, query.tag)
      if let deployment { statement.bind(4, deployment) }
      statements = [statement]
    } else if deployment == nil, states.count == RunState.terminal.count {
      statements = [
        try connection.statement("SELECT \(Self.row) FROM runs WHERE \(range) ORDER BY seq DESC LIMIT ?5")
      ]
    } else {
      // One query per state, each in the order of its index; merged below.
      for state in states.sorted(by: { $0.index < $1.index }) {
        let sql =
          deployment == nil
          ? "SELECT \(Self.row) FROM runs INDEXED BY runs_state WHERE state = ?3 AND \(range) ORDER BY seq DESC LIMIT ?5"
          : "SELECT \(Self.row) FROM runs INDEXED BY runs_deployment WHERE deployment = ?4 AND state = ?3 AND \(range) ORDER BY seq DESC LIMIT ?5"
        // Each state's statement is its own: the same SQL text would share one prepared statement.
        let statement = try connection.statement(sql + " -- \(state.index)").bind(3, Int64(state.index))
        if let deployment { statement.bind(4, deployment) }
        statements.append(statement)
      }
    }
    var merged: [Run] = []
    for statement in statements {
      statement.bind(1, Int64(low)).bind(2, Int64(high)).bind(5, Int64(limit))
      while try statement.step() {
        let run = try decodeRow(statement)
        // A tag row is not checksummed: the run's own, checksummed, tags vouch for it.
        guard query.tag.isEmpty || run.tags.contains(query.tag) else {
          throw Self.damagedRow("the tag \(query.tag) of the run enqueued at sequence \(run.firstSequence)")
        }
        merged.append(run)
      }
    }
    if statements.count > 1 {
      merged.sort { $0.firstSequence > $1.firstSequence }
      if merged.count > limit { merged.removeLast(merged.count - limit) }
    }
    return merged
  }

  /// The enqueue sequence of the first terminal run enqueued at `time` or later, or one past the
  /// last when none is. Enqueue times never decrease along the log, so a binary search over the
  /// sequences finds it without an index of times.
  func firstSequence(enqueuedAtOrAfter time: Timestamp) throws(QueueError) -> UInt64 {
    let probe = try connection.statement(
      "SELECT seq, enqueued FROM runs WHERE seq >= ?1 ORDER BY seq LIMIT 1")
    // Two statements: SQLite reads min() or max() of the key from the tree's edge only when it is
    // the statement's one result; both in one would scan the table.
    let lowest = try connection.statement("SELECT min(seq) FROM runs")
    let highest = try connection.statement("SELECT max(seq) FROM runs")
    defer {
      lowest.reset()
      highest.reset()
      probe.reset()
    }
    guard try lowest.step(), !lowest.isNull(0), try highest.step() else { return 0 }
    var low = lowest.int(0)
    var high = highest.int(0) + 1
    // Invariant: every run below `low` was enqueued before `time`; the first at or after `high`
    // (if any) was enqueued at `time` or later.
    while low < high {
      let middle = low + (high - low) / 2
      probe.reset()
      guard try probe.bind(1, middle).step(), Timestamp(micros: probe.int(1)) < time else {
        high = middle
        continue
      }
      low = probe.int(0) + 1
    }
    return UInt64(low)
  }

  /// Calls `body` with every terminal run, in the order of the log, until it returns false.
  func forEachTerminalRun(_ body: (Run) throws(QueueError) -> Bool) throws(QueueError) {
    let statement = try connection.statement("SELECT \(Self.row) FROM runs ORDER BY seq")
    defer { statement.reset() }
    while try statement.step() {
      guard try body(try decodeRow(statement)) else { return }
    }
  }

  /// How many terminal runs the index holds.
  func terminalCount() throws(QueueError) -> Int {
    let statement = try connection.statement("SELECT count(*) FROM runs")
    defer { statement.reset() }
    _ = try statement.step()
    return Int(statement.int(0))
  }

  /// A terminal run's columns, in the order ``decodeRow(_:)`` reads them.
  private static let row = row(of: nil)

  private static func row(of table: String?) -> String {
    let prefix = table.map { $0 + "." } ?? ""
    return ["seq", "id", "state", "deployment", "enqueued", "key", "data", "sum"].map { prefix + $0 }.joined(
      separator: ", ")
  }

  /// The terminal run in the current row of a statement that selects ``row``.
  private func decodeRow(_ statement: SQLiteConnection.Statement) throws(QueueError) -> Run {
    let row = RunRow(
      seq: statement.int(0), id: statement.blob(1), state: statement.int(2), deployment: statement.int(3),
      enqueued: statement.int(4), key: statement.isNull(5) ? nil : statement.string(5), data: statement.blob(6))
    guard row.sum == statement.int(7) else {
      throw Self.damagedRow("the row of the run enqueued at sequence \(row.seq)")
    }
    let state = Int(statement.int(2))
    guard let id = RunID(bytes: statement.blob(1)), RunState.byIndex.indices.contains(state) else {
      throw Self.damaged("a run")
    }
    let deploymentID = statement.int(3)
    if namesByID[deploymentID] == nil { try loadNames() }
    guard let deployment = namesByID[deploymentID] else { throw Self.damaged("a run's deployment") }
    let columns = RunColumns(
      id: id, state: RunState.byIndex[state], deployment: deployment,
      enqueuedAt: Timestamp(micros: statement.int(4)), idempotencyKey: statement.isNull(5) ? "" : statement.string(5),
      firstSequence: UInt64(bitPattern: statement.int(0)))
    return try decode(row.data, columns: columns)
  }

  static func activeSum(seq: Int64, data: [UInt8]) -> Int64 {
    var sum = RowSum()
    sum.add(seq)
    sum.add(data)
    return sum.value
  }

  static func nameSum(id: Int64, name: String) -> Int64 {
    var sum = RowSum()
    sum.add(id)
    sum.add(name)
    return sum.value
  }

  private func decode(_ bytes: [UInt8], columns: RunColumns?) throws(QueueError) -> Run {
    if let run = Run(indexRecord: bytes, columns: columns, name: { namesByID[Int64(bitPattern: $0)] }) { return run }
    // A name committed since the caches were filled (the writer's commits add them).
    try loadNames()
    guard let run = Run(indexRecord: bytes, columns: columns, name: { namesByID[Int64(bitPattern: $0)] }) else {
      throw Self.damaged("a run")
    }
    return run
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
