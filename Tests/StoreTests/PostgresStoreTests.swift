import Foundation
import GPSModel
import GPSTestSupport
import PostgresStore
import Queue
import Testing

/// The store on a real PostgreSQL server (Debian's, started by the tests: `SharedPostgres`).
@Suite struct PostgresStoreTests {
  /// A store on a new, empty database of the shared server.
  static func freshStore() async throws -> (store: PostgresStore, server: PostgresServer, url: String) {
    let database = try SharedPostgres.database()
    let store = try await PostgresStore.open(
      try StoreLocation(url: database.url), password: .file(database.server.passwordFile))
    return (store, database.server, database.url)
  }

  static func database(of url: String) -> String { String(url.split(separator: "/").last!) }

  /// A queue of `directory` leading `store` as `server` (taking the lead, catching up).
  static func lead(
    _ store: PostgresStore, as server: String, directory: String, lease: Duration = .seconds(60)
  ) async throws -> (queue: RunQueue, epoch: Int64) {
    let epoch = try #require(try await store.acquire(serverID: server, address: "\(server):1", lease: lease))
    try await StoreMirror.catchUp(directory: directory, store: store)
    var options = QueueOptions()
    options.log.fsync = .none
    options.log.store = EpochWriter(store: store, epoch: epoch, serverID: server)
    return (try RunQueue(directory: directory, options: options), epoch)
  }

  static func enqueue(_ queue: RunQueue, _ count: Int) async throws -> [RunID] {
    var ids: [RunID] = []
    for index in 0..<count {
      var request = EnqueueRequest(deployment: "flow/deploy", flow: "flow", parametersJSON: #"{"x":1}"#)
      request.idempotencyKey = "k-\(UUID().uuidString)-\(index)"
      ids.append(try await queue.enqueue(request).run.id)
    }
    return ids
  }

  @Test func theSchemaIsCreatedOnceAndANewerOneIsRefused() async throws {
    let (store, server, url) = try await Self.freshStore()
    defer { store.close() }
    let database = Self.database(of: url)
    #expect(try server.psql("SELECT version FROM gps_schema", database: database) == "\(PostgresStore.schemaVersion)")
    // A second open (another server starting) migrates nothing and sees the same cluster.
    let again = try await PostgresStore.open(try StoreLocation(url: url), password: .file(server.passwordFile))
    again.close()
    #expect(again.clusterID == store.clusterID)
    try server.psql("UPDATE gps_schema SET version = 99", database: database)
    await #expect {
      try await PostgresStore.open(try StoreLocation(url: url), password: .file(server.passwordFile))
    } throws: { error in
      let message = (error as? QueueError)?.message ?? ""
      return message.contains("version 99, newer than this gps knows") && message.contains("upgrade gps")
    }
  }

  /// A wrong password, a host where nothing listens, a server that accepts no writes: one line
  /// naming each host and its problem. With several hosts, the first that works is used.
  @Test func badConnectionsGetOneLineAndTheNextHostIsTried() async throws {
    let (store, server, url) = try await Self.freshStore()
    store.close()
    let database = Self.database(of: url)
    let closedPort = try PostgresServer.freePort()
    try await withTemporaryDirectory { directory in
      let wrong = try directory.writeFile("wrong", "not-the-password\n".data(using: .utf8)!)
      await #expect {
        try await PostgresStore.open(try StoreLocation(url: url), password: .file(wrong.path))
      } throws: { error in
        let message = (error as? QueueError)?.message ?? ""
        return message.contains("127.0.0.1:\(server.port)") && message.contains("password authentication failed")
          && !message.contains("\n")
      }
    }
    let unreachable = "postgres://gps@127.0.0.1:\(closedPort)/\(database)"
    await #expect {
      try await PostgresStore.open(try StoreLocation(url: unreachable), password: .file(server.passwordFile))
    } throws: { error in
      let message = (error as? QueueError)?.message ?? ""
      return (error as? QueueError)?.code == .unavailable && message.contains("127.0.0.1:\(closedPort)")
        && message.contains("check that PostgreSQL runs there")
    }
    // The first host is down, the second answers.
    let both = "postgres://gps@127.0.0.1:\(closedPort),127.0.0.1:\(server.port)/\(database)"
    let opened = try await PostgresStore.open(try StoreLocation(url: both), password: .file(server.passwordFile))
    #expect(opened.clusterID == store.clusterID)
    opened.close()
    // A database that accepts no writes (as a hot standby) is not a store to lead.
    try server.psql("ALTER DATABASE \(database) SET default_transaction_read_only = on", database: "postgres")
    await #expect {
      try await PostgresStore.open(try StoreLocation(url: url), password: .file(server.passwordFile))
    } throws: { error in
      ((error as? QueueError)?.message ?? "").contains("accepts no writes")
    }
  }

  /// `sslmode` and `sslrootcert` as libpq spells them, against a server that speaks TLS with a
  /// certificate for 127.0.0.1: verify-full with its authority connects over TLS (the server's
  /// own view says so); another authority, or a server without TLS where TLS is required, is one
  /// line naming the host and the problem.
  @Test func tlsIsUsedAndVerifiedAsLibpqSpellsIt() async throws {
    let (server, authority, other) = try PostgresServer.startWithTLS()
    defer { server.stop() }
    let password = StorePassword.file(server.passwordFile)
    let verified = try await PostgresStore.open(
      try StoreLocation(
        url: server.url(query: "?sslmode=verify-full&sslrootcert=\(authority)&application_name=gps-tls")),
      password: password)
    _ = try await verified.leader()
    let overTLS = try server.psql(
      "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'gps-tls' AND s.ssl",
      database: "postgres")
    #expect(Int(overTLS) ?? 0 > 0, "no TLS connection of the store: \(overTLS)")
    verified.close()
    await #expect {
      try await PostgresStore.open(
        try StoreLocation(url: server.url(query: "?sslmode=verify-ca&sslrootcert=\(other)")), password: password)
    } throws: { error in
      let message = (error as? QueueError)?.message ?? ""
      return message.contains("127.0.0.1:\(server.port)")
        && message.contains("not one the certificate authority in sslrootcert vouches for") && !message.contains("\n")
    }
    let plain = try SharedPostgres.database()
    await #expect {
      try await PostgresStore.open(
        try StoreLocation(url: plain.url + "?sslmode=require"), password: .file(plain.server.passwordFile))
    } throws: { error in
      let message = (error as? QueueError)?.message ?? ""
      return message.contains("127.0.0.1:\(plain.server.port)") && message.contains("does not speak TLS")
        && !message.contains("\n")
    }
  }

  /// Every acknowledged enqueue is a committed batch in the store, the same bytes as the local
  /// copy; a data directory rebuilt from the store replays to the same runs and verifies.
  @Test func acknowledgedMeansCommittedAndTheStoreRebuildsADataDirectory() async throws {
    let (store, server, url) = try await Self.freshStore()
    defer { store.close() }
    try await withTemporaryDirectory { first in
      let (queue, _) = try await Self.lead(store, as: "a", directory: first.path)
      let ids = try await Self.enqueue(queue, 20)
      let local = queue.lastBatch
      queue.close()
      let stored = try #require(try await store.lastBatch())
      #expect(stored.sequence == local.sequence && stored.hash == local.hash)
      let rows = try server.psql(
        "SELECT count(*), sum(last_seq - first_seq + 1) FROM gps_batches", database: Self.database(of: url))
      #expect(rows.hasSuffix("|\(local.sequence)"))
      try await withTemporaryDirectory { second in
        try await StoreMirror.catchUp(directory: second.path, store: store)
        let report = try LogVerifier(directory: second.path).verify()
        #expect(report.isIntact)
        let reopened = try RunQueue(directory: second.path)
        defer { reopened.close() }
        for id in ids { #expect(try reopened.run(id)?.state == .scheduled) }
        #expect(reopened.lastBatch.hash == local.hash)
      }
    }
  }

  /// A leader paused past its lease is deposed: its next write is refused (fenced) though it does
  /// not know it yet, nothing of it is acknowledged, and the chain the new leader continues is intact.
  @Test func aDeposedLeaderCannotAppend() async throws {
    let (store, server, url) = try await Self.freshStore()
    defer { store.close() }
    try await withTemporaryDirectory { root in
      let (a, epochA) = try await Self.lead(store, as: "a", directory: root.path + "/a")
      defer { a.close() }
      let fromA = try await Self.enqueue(a, 3)
      // A stops renewing (paused): its lease runs out.
      try server.psql("UPDATE gps_leader SET lease_until = '-infinity'", database: Self.database(of: url))
      let (b, epochB) = try await Self.lead(store, as: "b", directory: root.path + "/b")
      defer { b.close() }
      #expect(epochB == epochA + 1)
      let fromB = try await Self.enqueue(b, 2)
      await #expect {
        _ = try await Self.enqueue(a, 1)
      } throws: { error in
        let error = error as? QueueError
        return error?.code == .fenced && (error?.message.contains("b:1 leads the store at epoch \(epochB)") ?? false)
      }
      // Stopped: nothing more is written by A.
      await #expect(throws: QueueError.self) { _ = try await Self.enqueue(a, 1) }
      #expect(try await store.lastBatch()?.hash == b.lastBatch.hash)
      try await StoreMirror.catchUp(directory: root.path + "/c", store: store)
      #expect(try LogVerifier(directory: root.path + "/c").verify().isIntact)
      let c = try RunQueue(directory: root.path + "/c")
      defer { c.close() }
      for id in fromA + fromB { #expect(try c.run(id) != nil) }
      #expect(c.counts.total == 5)
    }
  }

  /// The store's connections are cut (as a restarted database or a proxy would): the next commit
  /// learns its batch was not stored and stores it once on a new connection.
  @Test func aDroppedConnectionNeitherLosesNorDuplicatesABatch() async throws {
    let (store, server, url) = try await Self.freshStore()
    defer { store.close() }
    let database = Self.database(of: url)
    try await withTemporaryDirectory { root in
      let (queue, _) = try await Self.lead(store, as: "a", directory: root.path)
      defer { queue.close() }
      _ = try await Self.enqueue(queue, 2)
      for _ in 0..<3 {
        try server.psql(
          "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '\(database)' AND pid <> pg_backend_pid()",
          database: "postgres")
        _ = try await Self.enqueue(queue, 2)
      }
      let local = queue.lastBatch
      #expect(try await store.lastBatch()?.hash == local.hash)
      let batches = try server.psql("SELECT sum(last_seq - first_seq + 1) FROM gps_batches", database: database)
      #expect(batches == "\(local.sequence)")
      #expect(queue.counts.total == 8)
    }
  }

  /// A data directory that copies one cluster's store is refused by another's, and one holding a
  /// log the store does not have is refused, nothing changed.
  @Test func aDataDirectoryOfAnotherClusterIsRefused() async throws {
    let (first, _, _) = try await Self.freshStore()
    defer { first.close() }
    let (second, _, _) = try await Self.freshStore()
    defer { second.close() }
    try await withTemporaryDirectory { root in
      let (queue, _) = try await Self.lead(first, as: "a", directory: root.path + "/a")
      _ = try await Self.enqueue(queue, 2)
      let before = queue.lastBatch
      queue.close()
      await #expect {
        try await StoreMirror.catchUp(directory: root.path + "/a", store: second)
      } throws: { error in
        ((error as? QueueError)?.message ?? "").contains("another GPS cluster's store")
      }
      // A file log of its own (no cluster file) is not this store's log either.
      let files = try RunQueue(directory: root.path + "/files")
      _ = try await Self.enqueue(files, 1)
      files.close()
      await #expect {
        try await StoreMirror.catchUp(directory: root.path + "/files", store: first)
      } throws: { error in
        ((error as? QueueError)?.message ?? "").contains("not a copy of this store's log")
      }
      let reopened = try RunQueue(directory: root.path + "/a")
      #expect(reopened.lastBatch.hash == before.hash)
      reopened.close()
    }
  }
}

@Suite struct StandbyTests {
  /// A hot standby follows the leader's batches (same state, same bytes), refuses writes and
  /// heartbeats naming the leader, and, once it leads, honours the lease a worker holds from the
  /// old leader: the worker's heartbeat and reports go on and its run completes.
  @Test func aStandbyFollowsTakesOverAndHonoursLeases() async throws {
    let (store, server, url) = try await PostgresStoreTests.freshStore()
    defer { store.close() }
    try await withTemporaryDirectory { root in
      let (leader, epoch) = try await PostgresStoreTests.lead(store, as: "a", directory: root.path + "/a")
      try await store.setAddress("10.0.0.1:4200", epoch: epoch, serverID: "a")
      let ids = try await PostgresStoreTests.enqueue(leader, 3)
      try await StoreMirror.catchUp(directory: root.path + "/b", store: store)
      var options = QueueOptions()
      options.log.fsync = .none
      options.standby = true
      let standby = try RunQueue(directory: root.path + "/b", options: options)
      defer { standby.close() }
      #expect(standby.isStandby)
      standby.setLeader("10.0.0.1:4200")
      let claim = try #require(try await leader.claim(scheduler: "worker-1"))
      let lease = LeaseToken(runID: claim.run.id, token: claim.lease.token)
      _ = try await leader.report(lease, .started(.init()))
      // The standby catches up: the claim and the start are there.
      try standby.follow(try await store.batches(after: standby.followingFrom - 1))
      await standby.waitUntilDurable(leader.durableSequence)
      #expect(standby.lastBatch.hash == leader.lastBatch.hash)
      #expect(try standby.run(claim.run.id)?.state == .running)
      #expect(try standby.run(claim.run.id)?.lease?.token == claim.lease.token)
      await #expect {
        _ = try await PostgresStoreTests.enqueue(standby, 1)
      } throws: { error in
        let error = error as? QueueError
        return error?.code == .notLeader
          && error?.message == "this server is a standby: the leader, 10.0.0.1:4200, takes writes"
      }
      #expect(throws: QueueError.self) { try standby.heartbeat(lease) }

      // The leader dies (its lease runs out); the standby takes the lead.
      try server.psql("UPDATE gps_leader SET lease_until = '-infinity'", database: PostgresStoreTests.database(of: url))
      let newEpoch = try #require(try await store.acquire(serverID: "b", address: "10.0.0.2:4200", lease: .seconds(60)))
      try standby.follow(try await store.batches(after: standby.followingFrom - 1))
      standby.promote(committingTo: EpochWriter(store: store, epoch: newEpoch, serverID: "b"))
      #expect(!standby.isStandby)
      _ = try standby.heartbeat(lease)
      _ = try await standby.report(lease, .completed(.init()))
      #expect(try standby.run(claim.run.id)?.state == .completed)
      let next = try #require(try await standby.claim(scheduler: "worker-2"))
      #expect(ids.contains(next.run.id) && next.run.id != claim.run.id)
      // The old leader cannot write any more.
      await #expect(throws: QueueError.self) { _ = try await leader.report(lease, .completed(.init())) }
      leader.close()
      #expect(try await store.lastBatch()?.hash == standby.lastBatch.hash)
    }
  }
}

@Suite struct DatabaseFailoverTests {
  /// PostgreSQL's own failover, which GPS does not manage but survives: a primary with a
  /// synchronous streaming replica, both started here; the primary is killed and the replica
  /// promoted; the leader's next commits reach it through the URL's second host. Every
  /// acknowledged run is there, before and after.
  @Test func theDatabasesFailoverLosesNothingAcknowledged() async throws {
    try await withPostgres { primary in
      let replica = try primary.startReplica(synchronous: true)
      defer { replica.stop() }
      let url =
        "postgres://gps@127.0.0.1:\(primary.port),127.0.0.1:\(replica.port)/gps?target_session_attrs=read-write"
      let store = try await PostgresStore.open(try StoreLocation(url: url), password: .file(primary.passwordFile))
      defer { store.close() }
      try await withTemporaryDirectory { root in
        let (queue, _) = try await PostgresStoreTests.lead(store, as: "a", directory: root.path + "/a")
        defer { queue.close() }
        let before = try await PostgresStoreTests.enqueue(queue, 10)
        primary.kill()
        try replica.promote()
        let after = try await PostgresStoreTests.enqueue(queue, 10)
        #expect(try await store.lastBatch()?.hash == queue.lastBatch.hash)
        try await StoreMirror.catchUp(directory: root.path + "/b", store: store)
        let rebuilt = try RunQueue(directory: root.path + "/b")
        defer { rebuilt.close() }
        for id in before + after { #expect(try rebuilt.run(id) != nil) }
        #expect(rebuilt.counts.total == 20)
        #expect(try LogVerifier(directory: root.path + "/b").verify().isIntact)
      }
    }
  }
}
