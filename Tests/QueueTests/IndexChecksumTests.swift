import Foundation
import GPSModel
import GPSTestSupport
import Synchronization
import Testing

@testable import Queue

/// Run-index rows damaged inside pages SQLite finds sound are never served: each row carries a
/// checksum, a read that finds one wrong refuses to answer and has the index rebuilt from the log,
/// and `history verify` compares the index with the log.
@Suite struct IndexChecksumTests {
  /// A queue of 40 finished runs and 3 waiting, indexed and closed.
  func indexedQueue(_ path: String) async throws -> QueueState {
    let queue = try RunQueue(directory: path, options: RunIndexTests.options())
    try await RunIndexTests.complete(40, active: 3, in: queue)
    try queue.flushIndex()
    queue.close()
    return try RunIndexTests.replayed(path)
  }

  /// Changes the index with SQL, as damage inside valid pages would: `integrity_check` stays ok.
  func tamper(_ path: String, _ sql: String) throws {
    let connection = try SQLiteConnection(path: RunStore.path(in: path))
    try connection.execute(sql)
    let check = try connection.statement("PRAGMA integrity_check")
    #expect(try check.step() && check.string(0) == "ok")
    check.reset()
  }

  @Test(arguments: [
    // Another run's record in a row: wrong parameters, state and result served as this run's.
    ("UPDATE runs SET data = (SELECT data FROM runs WHERE seq = (SELECT max(seq) FROM runs)) WHERE seq = SEQ", "row"),
    ("UPDATE runs SET state = (state + 1) % 5 WHERE seq = SEQ", "row"),
    ("UPDATE names SET name = 'flow/evil' WHERE name = 'flow/b'", "name"),
  ])
  func aDamagedTerminalRowIsNeverAnAnswerAndIsRebuilt(sql: String, what: String) async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      let replayed = try await indexedQueue(path)
      // The second run: of deployment flow/b.
      let target = replayed.runs.values.sorted { $0.firstSequence < $1.firstSequence }[1]
      #expect(target.deployment == "flow/b")
      try tamper(path, sql.replacingOccurrences(of: "SEQ", with: String(target.firstSequence)))

      // An offline reader refuses to answer from the row.
      // (A damaged name that active runs use keeps the reader from the index at once.)
      let reader = try QueueReader.fromIndex(directory: path)
      #expect(reader != nil || what == "name")
      if let reader {
        let offline = #expect(throws: QueueError.self) { _ = try reader.state.run(target.id) }
        #expect(offline?.message.hasPrefix(QueueError.runIndexDamage) == true, "\(offline?.message ?? "")")
        #expect(offline?.message.contains("fails its checksum") == true)
      }
      // The log answers instead.
      #expect(try QueueReader.ignoringIndex(directory: path).state.run(target.id) == target)

      // A live queue: the read fails, the failure is reported once and shown, and the next open
      // rebuilds the index from the log.
      let reports = Mutex<[String]>([])
      var options = RunIndexTests.options()
      options.onIndexFailure = { error in reports.withLock { $0.append(error.message) } }
      let queue = try RunQueue(directory: path, options: options)
      if let rebuilt = queue.startup.indexRebuilt {
        // The active runs use the damaged name: the open found it and rebuilt the index at once.
        #expect(what == "name")
        #expect(rebuilt.contains("fails its checksum"), "\(rebuilt)")
        #expect(try queue.state.run(target.id) == target)
        try RunIndexTests.expectListing(queue, equals: replayed, "rebuilt at open")
        queue.close()
        return
      }
      #expect(throws: QueueError.self) { _ = try queue.state.run(target.id) }
      try await eventually("the damage reported") { queue.indexStatus?.failure != nil }
      #expect(reports.withLock { $0 }.count == 1)
      #expect(reports.withLock { $0 }.first?.contains("fails its checksum") == true)
      queue.close()
      let reopened = try RunQueue(directory: path, options: RunIndexTests.options())
      defer { reopened.close() }
      #expect(reopened.startup.indexRebuilt?.contains("fails its checksum") == true, "\(what)")
      #expect(try reopened.state.run(target.id) == target)
      try RunIndexTests.expectListing(reopened, equals: replayed, "rebuilt after damaged \(what)")
      #expect(!FileManager.default.fileExists(atPath: RunStore.rebuildMarkPath(path)))
    }
  }

  @Test func aDamagedActiveRowOrCheckpointRebuildsTheIndexAtOpen() async throws {
    for sql in [
      "UPDATE active SET data = (SELECT data FROM active ORDER BY seq LIMIT 1) WHERE seq = (SELECT max(seq) FROM active)",
      "UPDATE meta SET value = value + 1 WHERE key = 'time'",
    ] {
      try await withTemporaryDirectory { directory in
        let replayed = try await indexedQueue(directory.path)
        try tamper(directory.path, sql)
        let queue = try RunQueue(directory: directory.path, options: RunIndexTests.options())
        defer { queue.close() }
        #expect(queue.startup.indexRebuilt?.contains("fails its checksum") == true, "\(sql)")
        #expect(queue.counts == replayed.counts)
        try RunIndexTests.expectListing(queue, equals: replayed, sql)
      }
    }
  }

  /// A row changed together with its checksum (a bug, or a hand) passes the read but not the
  /// comparison with the log.
  @Test func theComparisonWithTheLogFindsARowThatIsNotTheLogs() async throws {
    try await withTemporaryDirectory { directory in
      let path = directory.path
      let replayed = try await indexedQueue(path)
      let check = try #require(try IndexCheck(directory: path))
      #expect(check.sequence == replayed.lastSequence)
      #expect(try check.compare(with: replayed) == .agrees(runs: replayed.runs.count))

      let connection = try SQLiteConnection(path: RunStore.path(in: path))
      let select = try connection.statement("SELECT seq, id, state, deployment, enqueued, key, data FROM runs LIMIT 1")
      #expect(try select.step())
      var row = RunRow(
        seq: select.int(0), id: select.blob(1), state: select.int(2), deployment: select.int(3),
        enqueued: select.int(4), key: select.isNull(5) ? nil : select.string(5), data: select.blob(6))
      select.reset()
      row.state =
        row.state == Int64(RunState.completed.index) ? Int64(RunState.failed.index) : Int64(RunState.completed.index)
      try connection.statement("UPDATE runs SET state = ?1, sum = ?2 WHERE seq = ?3")
        .bind(1, row.state).bind(2, row.sum).bind(3, row.seq).run()
      guard case .differs(let difference) = try check.compare(with: replayed) else {
        Issue.record("a row that is not the log's was not found")
        return
      }
      #expect(difference.contains("is not the log's"), "\(difference)")
    }
  }
}
