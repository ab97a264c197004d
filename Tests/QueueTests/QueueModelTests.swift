import Foundation
import GPSModel
import GPSTestSupport
import PostgresStore
import Queue
import SwiftProtobuf
import Testing

@Suite struct QueueModelTests {
  static let seeds: [UInt64] = [1, 2, 3, 4, 5, 6]

  /// The same operations with every run in memory, and with terminal runs retired to the run
  /// index (after every commit of the indexer, and at random flushes): both agree with the model and
  /// with a full replay of the log.
  @Test(arguments: seeds, [false, true])
  func randomOperationsAgreeWithTheModelAcrossRestarts(seed: UInt64, indexed: Bool) async throws {
    try await randomOperations(seed: seed, indexed: indexed, onStore: false)
  }

  /// The same with the log in PostgreSQL (a server of the test's own): every batch committed there
  /// first, the data directory a copy; some restarts lose the whole data directory (a new machine)
  /// and rebuild it from the store. The store's chain ends with the local log's hash.
  @Test(arguments: [1, 2, 3] as [UInt64], [false, true])
  func randomOperationsAgreeWithTheModelOnPostgreSQL(seed: UInt64, indexed: Bool) async throws {
    try await randomOperations(seed: seed, indexed: indexed, onStore: true)
  }

  func randomOperations(seed: UInt64, indexed: Bool, onStore: Bool) async throws {
    var store: PostgresStore?
    if onStore {
      let database = try SharedPostgres.database()
      store = try await PostgresStore.open(
        try StoreLocation(url: database.url), password: .file(database.server.passwordFile))
    }
    defer { store?.close() }
    try await withTemporaryDirectory { directory in
      var random = SplitMix(state: seed)
      let limits = ConcurrencyLimits(deployments: ["d/a": 2], tags: ["x": 1])
      let fixture = QueueFixture(directory: directory) {
        $0.limits = limits
        $0.leaseDuration = .seconds(30)
        $0.lateAfter = .seconds(15)
        $0.snapshotEvery = 50
        if indexed {
          var index = RunIndexOptions()
          index.retireBatch = 1
          index.commitRuns = 8
          $0.runIndex = index
        }
      }
      var model = QueueModel(
        runs: [:], keys: [:], limits: limits, lease: .seconds(30), lateAfter: .seconds(15), requeueDelay: .seconds(2))
      var queue = try await fixture.open(on: store)
      var shadow = QueueState()
      var cursor = LogCursor()
      let reader = LogReader(directory: fixture.directory)
      /// Every lease token ever handed out, per run, to send stale ones too.
      var tokens: [RunID: [UInt64]] = [:]
      var restarts = 0
      var wiped = 0
      var retiredSeen = 0

      func code(of error: any Error) -> QueueError.Code? { (error as? QueueError)?.code }

      for step in 0..<400 {
        let now = fixture.clock.now()
        let previous = model.runs.mapValues(\.state)
        var retried: RunID?
        let roll = Int.random(in: 0..<100, using: &random)
        let ids = model.runs.keys.sorted()
        switch roll {
        case 0..<25:
          var request = request(
            ["d/a", "d/b", "d/c"].randomElement(using: &random)!,
            key: Int.random(in: 0..<5, using: &random) == 0 ? "k\(Int.random(in: 0..<4, using: &random))" : "",
            tags: [["x"], ["y"], [], [], ["x", "y"]].randomElement(using: &random)!,
            priority: Int32.random(in: -1...1, using: &random))
          request.scheduledStart = now + [.zero, .zero, .seconds(3), .seconds(20)].randomElement(using: &random)!
          request.crashPolicy = CrashPolicy(
            maxRequeues: UInt32.random(in: 0...1, using: &random), requeueDelay: .seconds(2))
          request.id = RunID(
            UUID(
              uuid: withUnsafeBytes(of: (random.next(), random.next())) { raw in
                let b = Array(raw)
                return (
                  b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
                )
              }))
          if let existing = model.keys[request.idempotencyKey], !request.idempotencyKey.isEmpty,
            model.runs[existing]!.deployment != request.deployment
          {
            // The same key for another request: refused, nothing written.
            await #expect(throws: QueueError.self, "step \(step)") { try await queue.enqueue(request) }
            break
          }
          let result = try await queue.enqueue(request)
          if let existing = model.keys[request.idempotencyKey], !request.idempotencyKey.isEmpty {
            #expect(!result.created && result.run.id == existing, "step \(step)")
          } else {
            #expect(result.created, "step \(step)")
            model.runs[result.run.id] = QueueModel.ModelRun(
              id: result.run.id, state: .scheduled, start: request.scheduledStart!, priority: request.priority,
              order: result.run.firstSequence, deployment: request.deployment, tags: request.tags,
              maxRequeues: request.crashPolicy.maxRequeues)
            if !request.idempotencyKey.isEmpty { model.keys[request.idempotencyKey] = result.run.id }
          }

        case 25..<45:
          // One run, or a batch claimed in one commit.
          let limit = Int.random(in: 1...3, using: &random)
          let claims = try await queue.claim(scheduler: ["s1", "s2"].randomElement(using: &random)!, limit: limit)
          var expected: [RunID] = []
          for claim in claims {
            expected.append(model.expectedClaim(now: now) ?? RunID())
            model.claimed(claim.run.id, token: claim.lease.token, now: now)
            tokens[claim.run.id, default: []].append(claim.lease.token)
          }
          #expect(claims.map(\.run.id) == expected, "step \(step): claim")
          if claims.count < limit { #expect(model.expectedClaim(now: now) == nil, "step \(step): claim stopped early") }

        case 45..<72:
          guard let id = tokens.keys.sorted().randomElement(using: &random) else { continue }
          let token =
            Int.random(in: 0..<7, using: &random) == 0
            ? tokens[id]!.randomElement(using: &random)! : (model.runs[id]!.token ?? tokens[id]!.last!)
          let current = model.runs[id]!
          let stepName =
            Bool.random(using: &random) ? current.step : ["prepare", "process"].randomElement(using: &random)!
          let number = UInt32.random(in: 0...1, using: &random) + current.attempt
          let event: RunEvent.OneOf_Kind =
            switch Int.random(in: 0..<10, using: &random) {
            case 0: .started(.init())
            case 1, 2:
              .attemptStarted(
                .with {
                  $0.step = stepName; $0.attempt = max(1, number)
                })
            case 3:
              .attemptSucceeded(
                .with {
                  $0.step = stepName; $0.attempt = number
                })
            case 4:
              .attemptFailed(
                .with {
                  $0.step = stepName; $0.attempt = number; $0.statusCode = 14
                })
            case 5:
              .retryScheduled(
                .with {
                  $0.step = stepName
                  $0.nextAttempt = number + 1
                  $0.retryAtMicros = (now + .seconds(1)).micros
                })
            case 6: .completed(.init())
            case 7: .failed(.with { $0.reason = "model" })
            case 8: .cancelled(.init())
            default: Bool.random(using: &random) ? .crashed(.init()) : .timedOut(.init())
            }
          let expected = model.report(id, token: token, event)
          do {
            let run = try await queue.report(LeaseToken(runID: id, token: token), event)
            #expect(expected == .ok(run.state), "step \(step): report \(event)")
          } catch {
            #expect(expected == .refused(code(of: error)!), "step \(step): report \(event): \(error)")
          }

        case 72..<78:
          guard let id = tokens.keys.sorted().randomElement(using: &random) else { continue }
          let token = tokens[id]!.last!
          do {
            let reply = try queue.heartbeat(LeaseToken(runID: id, token: token))
            #expect(model.runs[id]!.token == token, "step \(step): heartbeat accepted")
            #expect(reply.cancelRequested == (model.runs[id]!.state == .cancelling))
            model.runs[id]!.deadline = now + model.lease
          } catch {
            #expect(code(of: error) == .leaseLost && model.runs[id]!.token != token, "step \(step): heartbeat")
          }

        case 78..<88:
          fixture.clock.advance(
            by: [.seconds(1), .seconds(5), .seconds(16), .seconds(31)].randomElement(using: &random)!)
          let expected = model.tick(now: fixture.clock.now())
          let report = try await queue.tick()
          #expect(Set(report.markedLate) == expected.late, "step \(step): late")
          #expect(Set(report.leasesExpired) == expected.expired, "step \(step): expired")

        case 88..<93:
          guard let id = ids.randomElement(using: &random) else { continue }
          let expected = model.cancel(id)
          do {
            #expect(expected == .ok(try await queue.cancel(id, by: "model").state), "step \(step): cancel")
          } catch {
            #expect(expected == .refused(code(of: error)!), "step \(step): cancel \(error)")
          }

        case 93..<97:
          guard let id = ids.randomElement(using: &random) else { continue }
          let expected = model.retry(id, now: now)
          do {
            #expect(expected == .ok(try await queue.retry(id, by: "model").state), "step \(step): retry")
            retried = id
          } catch {
            #expect(expected == .refused(code(of: error)!), "step \(step): retry \(error)")
          }

        default:
          let before = try LogicalState(queue)
          queue.close(writingSnapshot: Bool.random(using: &random))
          if store != nil, Bool.random(using: &random) {
            // A new machine: nothing of the data directory but what the store holds.
            for name in try FileManager.default.contentsOfDirectory(atPath: fixture.directory) {
              try FileManager.default.removeItem(atPath: fixture.directory + "/" + name)
            }
            shadow = QueueState()
            cursor = LogCursor()
            wiped += 1
          }
          queue = try await fixture.open(on: store)
          restarts += 1
          #expect(try LogicalState(queue) == before, "step \(step): restart")
          // Leases survive a restart with a full duration from it.
          for id in model.runs.keys where model.runs[id]!.token != nil {
            model.runs[id]!.deadline = fixture.clock.now() + model.lease
          }
        }

        // Invariants, after every step.
        if indexed, Int.random(in: 0..<4, using: &random) == 0 { try queue.flushIndex() }
        try reader.read(&cursor) { try shadow.apply($0) }
        let live = try LogicalState(queue)
        #expect(live == LogicalState(shadow), "step \(step): the live state is the fold of the log")
        if live.runs.count != shadow.runs.count {
          let missing = shadow.runs.values.filter { run in !live.runs.contains { $0.id == run.id } }
          Issue.record(
            "step \(step): missing \(missing.map { "\($0.id) \($0.state) seq \($0.firstSequence)-\($0.lastSequence) retries \($0.userRetries)" }) memory: \(queue.withState { s in missing.map { s.runs[$0.id] != nil } }) direct: \(try missing.map { try queue.run($0.id)?.state })"
          )
        }
        retiredSeen = max(retiredSeen, live.runs.count - queue.withState { $0.runs.count })
        #expect(live.runs.reduce(0) { $0 + UInt64($1.eventCount) } == live.lastSequence)
        for (key, id) in shadow.idempotencyKeys {
          let found = try queue.withState { try $0.run(idempotencyKey: key) }
          #expect(
            found?.id == id,
            "step \(step): key \(key): \(String(describing: found?.state)) in memory \(queue.withState { $0.runs[id] != nil })"
          )
        }
        for (id, expected) in model.runs {
          let run = try #require(try queue.run(id))
          #expect(run.state == expected.state, "step \(step): run \(id)")
          #expect(run.lease?.token == expected.token, "step \(step): lease of \(id)")
          if let was = previous[id], was.isTerminal, was != run.state {
            #expect(retried == id, "step \(step): a terminal run changed state without a retry")
          }
        }
        // Listing a page at a time gives the replay's matching runs, newest first.
        let query = [
          RunQuery(), RunQuery(states: [.completed, .failed, .scheduled]), RunQuery(deployment: "d/a"),
          RunQuery(tag: "x"), RunQuery(states: [.cancelled], deployment: "d/b"),
          RunQuery(enqueuedAfter: Timestamp(micros: now.micros - 30_000_000), enqueuedBefore: now),
        ].randomElement(using: &random)!
        var listed: [RunID] = []
        var start: UInt64?
        repeat {
          let page = try queue.runs(matching: query, upTo: start, limit: 3)
          listed += page.runs.map(\.id)
          start = page.next
        } while start != nil
        #expect(
          listed == shadow.runs.values.filter(query.matches).reversed().map(\.id), "step \(step): listing \(query)")
        let state = queue.state
        for (deployment, limit) in limits.deployments {
          #expect(state.slotsByDeployment[deployment, default: 0] <= limit)
        }
        for (tag, limit) in limits.tags { #expect(state.slotsByTag[tag, default: 0] <= limit) }
        #expect(live.counts.total == live.runs.count)
        for state in RunState.allCases {
          #expect(live.counts[state] == live.runs.filter { $0.state == state }.count, "step \(step): \(state)")
        }
      }
      let local = queue.lastBatch
      queue.close()
      if let store {
        let stored = try await store.lastBatch()
        #expect(stored?.sequence == local.sequence && stored?.hash == local.hash, "the store's chain is the log's")
        #expect(wiped > 0, "some restarts rebuilt the data directory from the store")
      }
      #expect(restarts > 0)
      if indexed { #expect(retiredSeen > 0, "some runs left memory for the index") }
      #expect(model.runs.values.contains { $0.state.isTerminal })
    }
  }
}
