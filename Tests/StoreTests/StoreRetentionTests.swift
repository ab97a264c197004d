import Foundation
import GPSModel
import GPSTestSupport
import PostgresStore
import Queue
import Testing

/// Retention on a store: the leader archives the store's log as it archives files — the store
/// keeps the anchor and a checkpoint of the run index, the archived batches leave it — and every
/// copy follows: a standby archives its own segments, a new copy starts from the checkpoint, and
/// all of them answer for the archived runs and verify from the anchor.
@Suite struct StoreRetentionTests {
  /// Queue options of a server on a store: the run index, small segments so several seal.
  static func options(standby: Bool = false) -> QueueOptions {
    var options = QueueOptions.dataDirectory
    options.log.fsync = .none
    options.log.segmentSize = 8 * 1024
    options.standby = standby
    return options
  }

  static func lead(_ store: PostgresStore, as server: String, directory: String) async throws -> RunQueue {
    let epoch = try #require(try await store.acquire(serverID: server, address: "\(server):1", lease: .seconds(60)))
    try await StoreMirror.catchUp(directory: directory, store: store)
    var options = options()
    options.log.store = EpochWriter(store: store, epoch: epoch, serverID: server)
    return try RunQueue(directory: directory, options: options)
  }

  /// `count` runs enqueued, claimed and completed.
  static func complete(_ count: Int, in queue: RunQueue, from start: Int = 0) async throws -> [RunID] {
    var ids: [RunID] = []
    for index in start..<(start + count) {
      var request = EnqueueRequest(deployment: "flow/d", flow: "flow", parametersJSON: #"{"n":\#(index)}"#)
      request.idempotencyKey = "k\(index)"
      ids.append(try await queue.enqueue(request).run.id)
      let claim = try #require(try await queue.claim(scheduler: "s"))
      try await queue.report(claim.token, [.started(.init()), .completed(.init())])
    }
    return ids
  }

  /// `body` with a fresh store (on the shared server, and its database's name), a temporary
  /// directory and a queue leading the store in its `a`.
  static func withLeaderOnAFreshStore(
    _ body: (PostgresStore, PostgresServer, String, URL, RunQueue) async throws -> Void
  ) async throws {
    let (store, server, url) = try await PostgresStoreTests.freshStore()
    defer { store.close() }
    try await withTemporaryDirectory { root in
      let leader = try await lead(store, as: "a", directory: root.path + "/a")
      defer { leader.close() }
      try await body(store, server, PostgresStoreTests.database(of: url), root, leader)
    }
  }

  static func segments(_ path: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(".seg") }.sorted()
  }

  @Test func theLeaderArchivesTheStoresLogAndEveryCopyFollows() async throws {
    try await Self.withLeaderOnAFreshStore { store, server, database, root, leader in
      var old = try await Self.complete(1, in: leader)
      try await StoreMirror.catchUp(directory: root.path + "/behind", store: store)
      old += try await Self.complete(199, in: leader, from: 1)
      // A standby that copied everything so far.
      try await StoreMirror.catchUp(directory: root.path + "/b", store: store, options: Self.options().log)
      let standby = try RunQueue(directory: root.path + "/b", options: Self.options(standby: true))
      defer { standby.close() }

      try leader.flushIndex()
      let report = try leader.archive(before: .sequence(.max), archivedBy: "tester")
      let archived = try #require(report.archived, "\(report)")
      #expect(report.logStart == archived.upperBound + 1 && report.logStart > 1)
      #expect(leader.logStart == report.logStart)
      #expect(Self.segments(root.path + "/a/archive") == report.segments)

      // The store: the anchor, a checkpoint, and no batch before the anchor.
      let stored = try #require(try await store.anchor())
      #expect(stored.anchor.firstSequence == report.logStart && !stored.deleted)
      #expect(stored.anchor.archive?.noteSequence == report.noteSequence)
      #expect(try server.psql("SELECT min(first_seq) FROM gps_batches", database: database) == "\(report.logStart)")
      #expect(try server.psql("SELECT count(*) > 0 FROM gps_checkpoint", database: database) == "t")
      #expect(try await store.archiveIntent() == nil)

      // A new copy starts from the checkpoint at the anchor: every run answers, the chain verifies.
      let later = try await Self.complete(20, in: leader, from: 200)
      try await StoreMirror.catchUp(directory: root.path + "/c", store: store)
      do {
        let copy = try RunQueue(directory: root.path + "/c", options: Self.options())
        defer { copy.close() }
        for id in old + later { #expect(try copy.run(id)?.state == .completed) }
        #expect(copy.counts == leader.counts)
        #expect(copy.logStart == report.logStart)
        #expect(copy.lastBatch.hash == leader.lastBatch.hash)
      }
      let verified = try LogVerifier(directory: root.path + "/c").verify()
      #expect(verified.isIntact, "\(verified.problem ?? "")")
      #expect(verified.anchor?.firstSequence == report.logStart)
      // Caught up again later, from where it stopped.
      _ = try await Self.complete(5, in: leader, from: 220)
      try await StoreMirror.catchUp(directory: root.path + "/c", store: store)

      // The standby follows the batches and archives its own copy as far as the store's.
      try standby.follow(try await store.batches(after: standby.followingFrom - 1))
      await standby.waitUntilDurable(leader.durableSequence)
      try standby.flushIndex()
      #expect(try standby.adoptArchive(stored.anchor, deleted: stored.deleted))
      #expect(standby.logStart > 1 && standby.logStart <= report.logStart)
      #expect(!Self.segments(root.path + "/b/archive").isEmpty)
      #expect(try !standby.adoptArchive(stored.anchor, deleted: stored.deleted), "adopted once")
      for id in old { #expect(try standby.run(id)?.state == .completed) }
      let standbyVerified = try LogVerifier(directory: root.path + "/b").verify()
      #expect(standbyVerified.isIntact, "\(standbyVerified.problem ?? "")")

      // A standby that stood before the anchor cannot follow on by batches: one line says what to do.
      await #expect {
        _ = try await store.batches(after: 5)
      } throws: { error in
        (error as? QueueError)?.message.contains(
          "archived its log up to sequence \(report.logStart - 1) while this copy")
          == true
      }
      // A copy that stopped before the anchor cannot catch up by batches: one line says what to do.
      await #expect {
        try await StoreMirror.catchUp(directory: root.path + "/behind", store: store)
      } throws: { error in
        (error as? QueueError)?.message.contains("archived its log up to sequence \(report.logStart - 1) meanwhile")
          == true && (error as? QueueError)?.message.contains("give this server an empty --data-dir") == true
      }
    }
  }

  /// An archive leaves what a live standby has not copied; one stopped after its note (the store
  /// refused its commit) is finished by the next, with no second note for it.
  @Test func anArchiveWaitsForLiveStandbysAndOneStoppedAfterItsNoteIsFinished() async throws {
    try await Self.withLeaderOnAFreshStore { store, server, database, root, leader in
      _ = try await Self.complete(200, in: leader)
      try leader.flushIndex()
      try await store.report(
        PostgresStore.ServerReport(serverID: "s", address: "s:1", role: "standby", epoch: 1, lastSequence: 10))
      let held = try leader.archive(before: .sequence(.max), archivedBy: "tester")
      #expect(held.archived == nil)
      #expect(held.stoppedBecause?.contains("a standby has copied the store's log only up to sequence 10") == true)
      try await store.forget(serverID: "s")

      // The commit fails after the note: the archive says so, and nothing left the store.
      try server.psql("ALTER TABLE gps_checkpoint RENAME TO gps_checkpoint_away", database: database)
      #expect {
        try leader.archive(before: .sequence(.max), archivedBy: "tester")
      } throws: { error in
        (error as? QueueError)?.message.contains("archiving stopped after its note") == true
      }
      #expect(try await store.anchor() == nil)
      #expect(try server.psql("SELECT min(first_seq) FROM gps_batches", database: database) == "1")
      let intent = try #require(try await store.archiveIntent())
      #expect(leader.logStart == 1)

      // The next archive finishes it first.
      try server.psql("ALTER TABLE gps_checkpoint_away RENAME TO gps_checkpoint", database: database)
      _ = try leader.archive(before: .sequence(intent.note.lastArchived + 1), archivedBy: "tester")
      let stored = try #require(try await store.anchor())
      #expect(stored.anchor.firstSequence == intent.note.lastArchived + 1)
      #expect(leader.logStart == stored.anchor.firstSequence)
      #expect(try await store.archiveIntent() == nil)
      var notes = 0
      try LogReader(directory: root.path + "/a").read { record in
        if case .logSegmentsArchived = try RunEvent(record).kind { notes += 1 }
      }
      #expect(notes == 1, "one note for one archive")
      #expect(try LogVerifier(directory: root.path + "/a").verify().isIntact)
    }
  }

  /// A file log whose head was archived migrates to a store as a server's archive leaves one: the
  /// store gets its anchor and its run index as the checkpoint, then its retained batches; a new
  /// copy of the store answers for every run and verifies from the anchor. Migrating again copies
  /// nothing more.
  @Test func aLogArchivedOnFilesMigratesWithItsAnchor() async throws {
    let (store, _, _) = try await PostgresStoreTests.freshStore()
    defer { store.close() }
    try await withTemporaryDirectory { root in
      let files = root.path + "/files"
      let ids: [RunID]
      let logStart: UInt64
      do {
        let queue = try RunQueue(directory: files, options: Self.options())
        defer { queue.close() }
        ids = try await Self.complete(150, in: queue)
        try queue.flushIndex()
        logStart = try queue.archive(before: .sequence(.max), archivedBy: "tester").logStart
      }
      #expect(logStart > 1)
      let report = try await LogMigration.toStore(directory: files, store: store)
      #expect(report.copiedBatches > 0)
      let stored = try #require(try await store.anchor())
      #expect(stored.anchor.firstSequence == logStart)
      try await StoreMirror.catchUp(directory: root.path + "/copy", store: store)
      do {
        let copy = try RunQueue(directory: root.path + "/copy", options: Self.options())
        defer { copy.close() }
        for id in ids { #expect(try copy.run(id)?.state == .completed) }
        #expect(copy.lastBatch.hash == report.lastHash)
      }
      #expect(try LogVerifier(directory: root.path + "/copy").verify().isIntact)
      let again = try await LogMigration.toStore(directory: files, store: store)
      #expect(again.copiedBatches == 0 && again.skippedBatches == report.copiedBatches)
    }
  }
}
