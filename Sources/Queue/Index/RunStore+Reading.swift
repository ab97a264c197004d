import GPSModel

extension RunStore {
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

  func decode(_ bytes: [UInt8], columns: RunColumns?) throws(QueueError) -> Run {
    if let run = Run(indexRecord: bytes, columns: columns, name: { namesByID[Int64(bitPattern: $0)] }) { return run }
    // A name committed since the caches were filled (the writer's commits add them).
    try loadNames()
    guard let run = Run(indexRecord: bytes, columns: columns, name: { namesByID[Int64(bitPattern: $0)] }) else {
      throw Self.damaged("a run")
    }
    return run
  }
}
