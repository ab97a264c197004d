import Foundation
import GPSModel
import GPSTestSupport
import Testing

/// `gps server start --store postgres://…`: servers on one PostgreSQL store (a server of the test's
/// own), one leading, one standing by.
@Suite struct StoreServerTests {
  /// The leader runs a flow to completion and is killed (SIGKILL); the standby takes the lead
  /// within a few leases, with the run as the leader left it, and runs the next one. A clean stop
  /// releases the lead at once.
  @Test func aStandbyTakesOverWhenTheLeaderIsKilledAndLosesNoRun() async throws {
    let database = try SharedPostgres.database()
    try await withTemporaryDirectory { root in
      let bench = try await Workbench(root: root)
      func startStoreServer(_ name: String) throws -> GPSProcess {
        try GPSProcess([
          "server", "start", "--data-dir", root.path + "/" + name, "--port", "0", "--a", bench.aAddress, "--b",
          bench.bAddress, "--store", database.url, "--store-password-file", database.server.passwordFile,
          "--store-lease", "1s",
        ])
      }
      let first = try startStoreServer("one")
      let firstAddress = try await first.listeningAddress()
      let run = try await GPSProcess.run([
        "deployment", "run", "server-flow/MyPrefectDeployer", "--param", Workbench.snippet, "--watch", "--server",
        firstAddress,
      ])
      #expect(run.status == 0, "\(run.stderr); the leader said: \(first.stderr)")
      let id = try #require(Workbench.runID(run.stdout))

      // The second stands by, hot: it follows the log and answers reads; writes name the leader.
      let second = try startStoreServer("two")
      let secondAddress = try await second.listeningAddress()
      #expect(
        await second.waitForOutput { _, stderr in stderr.contains("standing by: \(firstAddress) leads the store") },
        "\(second.stderr)")
      try await eventually("the standby to show the completed run") {
        let listed = try await GPSProcess.run(["flow-run", "ls", "--output", "json", "--server", secondAddress])
        return listed.stdout.contains(id) && listed.stdout.contains("Completed")
      }
      // The cluster as the store and the standby's web port see it.
      try await eventually("both servers in the store's registry") {
        let status = try await GPSProcess.run(
          ["cluster", "status", "--store", database.url, "--store-password-file", database.server.passwordFile])
        return status.stdout.contains("leader: \(firstAddress) at epoch") && status.stdout.contains(secondAddress)
          && status.stdout.contains("standby")
      }
      let web = WebClient(base: try await second.webAddress())
      let ready = try await web.get("/readyz")
      #expect(ready.status == 200 && ready.json["role"] as? String == "standby", "\(ready.body)")
      let cluster = try await web.get("/api/cluster")
      let servers = try #require(cluster.json["servers"] as? [[String: Any]], "\(cluster.body)")
      #expect(Set(servers.compactMap { $0["role"] as? String }) == ["leader", "standby"])
      #expect(servers.contains { $0["self"] as? Bool == true && $0["address"] as? String == secondAddress })
      // A write sent to the standby is answered UNAVAILABLE naming the leader, which the CLI follows.
      let followed = try await GPSProcess.run([
        "deployment", "run", "server-flow/MyPrefectDeployer", "--param", Workbench.snippet, "--watch", "--server",
        secondAddress,
      ])
      #expect(followed.status == 0, "\(followed.stderr)")
      #expect(followed.stderr.contains("\(secondAddress) is a standby; \(firstAddress) leads"), "\(followed.stderr)")
      let secondID = try #require(Workbench.runID(followed.stdout))

      first.signal(SIGKILL)
      _ = await first.waitForExit()
      let killed = ContinuousClock.now
      #expect(
        await second.waitForOutput { _, stderr in stderr.contains("this server leads the store") }, "\(second.stderr)")
      let takeover = ContinuousClock.now - killed
      #expect(takeover < .seconds(10), "took over in \(takeover)")

      let listed = try await GPSProcess.run(["flow-run", "ls", "--output", "json", "--server", secondAddress])
      let runs = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])
      #expect(Set(runs.compactMap { $0["id"] as? String }) == [id, secondID])
      #expect(runs.allSatisfy { $0["state"] as? String == "Completed" }, "\(listed.stdout)")
      let next = try await GPSProcess.run([
        "deployment", "run", "server-flow/MyPrefectDeployer", "--param", Workbench.snippet, "--watch", "--server",
        secondAddress,
      ])
      #expect(next.status == 0, "\(next.stderr)")
      let verify = try await GPSProcess.run(["history", "verify", "--data-dir", root.path + "/two"])
      #expect(verify.status == 0, "\(verify.stderr)")
      #expect(verify.stdout.contains("of 3 runs"), "\(verify.stdout)")

      second.signal(SIGTERM)
      #expect(await second.waitForExit() == 0, "\(second.stderr)")
      let lease = try database.server.psql(
        "SELECT lease_until = '-infinity' FROM gps_leader", database: String(database.url.split(separator: "/").last!))
      #expect(lease == "t", "a clean stop releases the lead")
    }
  }

  @Test func aStoreThatCannotBeReachedStopsTheStartWithOneLine() async throws {
    try await withTemporaryDirectory { root in
      let port = try PostgresServer.freePort()
      let result = try await GPSProcess.run([
        "server", "start", "--data-dir", root.path + "/data", "--port", "0", "--no-scheduler", "--store",
        "postgres://gps@127.0.0.1:\(port)/gps",
      ])
      #expect(result.status != 0)
      let last = result.stderr.split(separator: "\n").last.map(String.init) ?? ""
      #expect(last.contains("cannot use the store postgres://gps@127.0.0.1:\(port)/gps"), "\(result.stderr)")
      #expect(last.contains("check that PostgreSQL runs there"), "\(result.stderr)")
      let password = try await GPSProcess.run([
        "server", "start", "--data-dir", root.path + "/data", "--store", "postgres://gps:secret@127.0.0.1/gps",
      ])
      #expect(password.status != 0)
      #expect(password.stderr.contains("never be on a command line") && !password.stderr.contains("secret"))
    }
  }

  /// A file log moved to PostgreSQL and back: the same sequences and hashes, `history verify`
  /// passes, a second migration copies nothing, and the directory serves on as the store's copy.
  @Test func aLogMigratesToPostgreSQLAndBackWithTheSameHashes() async throws {
    let database = try SharedPostgres.database()
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      var ids: [String] = []
      let files = try GPSProcess(["server", "start", "--data-dir", data, "--port", "0", "--no-scheduler"])
      _ = try await files.listeningAddress()
      for _ in 0..<3 {
        let enqueued = try await GPSProcess.run([
          "enqueue", "server-flow/MyPrefectDeployer", "--param", Workbench.snippet, "--data-dir", data,
        ])
        #expect(enqueued.status == 0, "\(enqueued.stderr)")
        ids.append(try #require(Workbench.runID(enqueued.stdout)))
      }
      files.signal(SIGTERM)
      #expect(await files.waitForExit() == 0)
      let password = ["--store-password-file", database.server.passwordFile]
      let there = try await GPSProcess.run(["log", "migrate", "--from", data, "--to", database.url] + password)
      #expect(there.status == 0, "\(there.stderr)")
      let hash = try #require(there.stdout.range(of: #"with hash [0-9a-f]{16}"#, options: .regularExpression))
      #expect(there.stdout.contains("batches ("), "\(there.stdout)")
      let again = try await GPSProcess.run(["log", "migrate", "--from", data, "--to", database.url] + password)
      #expect(
        again.stdout.contains("0 batches (0 events) copied") && again.stdout.contains("were there already"),
        "\(again.stdout)")

      let back = try await GPSProcess.run(
        ["log", "migrate", "--from", database.url, "--to", root.path + "/back"] + password)
      #expect(back.status == 0, "\(back.stderr)")
      #expect(back.stdout.contains(String(there.stdout[hash])), "\(back.stdout)")
      let verify = try await GPSProcess.run(["history", "verify", "--data-dir", root.path + "/back"])
      #expect(verify.status == 0 && verify.stdout.contains("of 3 runs"), "\(verify.stdout) \(verify.stderr)")
      let listed = try await GPSProcess.run(["flow-run", "ls", "--output", "json", "--data-dir", root.path + "/back"])
      let runs = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])
      #expect(Set(runs.compactMap { $0["id"] as? String }) == Set(ids))
      let full = try await GPSProcess.run(
        ["log", "migrate", "--from", database.url, "--to", root.path + "/back"] + password)
      #expect(full.status != 0 && full.stderr.contains("is not empty"), "\(full.stderr)")

      // The directory the log came from serves on as the store's copy.
      let server = try GPSProcess(
        [
          "server", "start", "--data-dir", data, "--port", "0", "--no-scheduler", "--store", database.url,
        ] + password)
      let address = try await server.listeningAddress()
      #expect(
        await server.waitForOutput { _, stderr in stderr.contains("this server leads the store") }, "\(server.stderr)")
      let served = try await GPSProcess.run(["flow-run", "ls", "--output", "json", "--server", address])
      #expect(ids.allSatisfy { served.stdout.contains($0) }, "\(served.stdout)")
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0, "\(server.stderr)")
    }
  }

  /// A worker (`gps scheduler --server A,B`) and the CLI given both servers follow the leader: an
  /// enqueue sent to the standby goes to the leader; the leader is killed while the worker's run
  /// is in a slow step; the worker's report reaches the new leader, which honours its lease: the
  /// run completes, claimed once.
  @Test func aWorkerAndTheCLIFollowTheLeaderAcrossAFailover() async throws {
    let database = try SharedPostgres.database()
    try await withTemporaryDirectory { root in
      let bench = try await Workbench(root: root, bArguments: ["--latency", "2s"])
      func startStoreServer(_ name: String) throws -> GPSProcess {
        try GPSProcess([
          "server", "start", "--data-dir", root.path + "/" + name, "--port", "0", "--no-scheduler", "--store",
          database.url, "--store-password-file", database.server.passwordFile, "--store-lease", "1s",
        ])
      }
      let first = try startStoreServer("one")
      let firstAddress = try await first.listeningAddress()
      #expect(await first.waitForOutput { _, stderr in stderr.contains("this server leads the store") })
      let second = try startStoreServer("two")
      let secondAddress = try await second.listeningAddress()
      let both = "\(secondAddress),\(firstAddress)"
      let worker = try GPSProcess([
        "scheduler", "--server", "\(firstAddress),\(secondAddress)", "--a", bench.aAddress, "--b", bench.bAddress,
      ])
      #expect(await worker.waitForOutput { stdout, _ in stdout.contains("working for") }, "\(worker.stderr)")
      let enqueued = try await GPSProcess.run([
        "enqueue", "server-flow/MyPrefectDeployer", "--param", Workbench.snippet, "--server", both,
      ])
      #expect(enqueued.status == 0, "\(enqueued.stderr)")
      #expect(enqueued.stderr.contains("\(secondAddress) is a standby; \(firstAddress) leads"), "\(enqueued.stderr)")
      let id = try #require(Workbench.runID(enqueued.stdout))
      // The run is in its slow step (B answers after 2 s) when the leader dies.
      try await eventually("the run to run") {
        let shown = try await GPSProcess.run(["flow-run", "inspect", id, "--server", firstAddress])
        return shown.stdout.contains("process")
      }
      first.signal(SIGKILL)
      _ = await first.waitForExit()
      try await eventually("the run to complete on the new leader") {
        let listed = try await GPSProcess.run(["flow-run", "ls", "--output", "json", "--server", both])
        return listed.stdout.contains(id) && listed.stdout.contains("Completed")
      }
      let history = try await GPSProcess.run([
        "history", "replay", "--run", id, "--output", "jsonl", "--data-dir", root.path + "/two",
      ])
      let types = history.stdout.split(separator: "\n").compactMap { line in
        (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["type"] as? String
      }
      #expect(types.filter { $0 == "RunClaimed" }.count == 1, "\(types)")
      #expect(types.last == "RunCompleted", "\(types)")
      worker.signal(SIGTERM)
      _ = await worker.waitForExit()
      second.signal(SIGTERM)
      #expect(await second.waitForExit() == 0)
    }
  }

  /// A leader paused (SIGSTOP) past its lease is deposed while it cannot know it; resumed, it
  /// writes nothing more (its commits are fenced by the epoch) and stops with one line; the chain
  /// the new leader continued verifies, and no run but the acknowledged ones is in it.
  @Test func aPausedLeaderIsDeposedAndWritesNothingMore() async throws {
    let database = try SharedPostgres.database()
    try await withTemporaryDirectory { root in
      func startStoreServer(_ name: String) throws -> GPSProcess {
        try GPSProcess([
          "server", "start", "--data-dir", root.path + "/" + name, "--port", "0", "--no-scheduler", "--store",
          database.url, "--store-password-file", database.server.passwordFile, "--store-lease", "1s",
        ])
      }
      func enqueueThrough(_ server: String) async throws -> (status: Int32, stdout: String, stderr: String) {
        try await GPSProcess.run([
          "enqueue", "server-flow/MyPrefectDeployer", "--param", Workbench.snippet, "--server", server,
        ])
      }
      let first = try startStoreServer("one")
      let firstAddress = try await first.listeningAddress()
      #expect(await first.waitForOutput { _, stderr in stderr.contains("this server leads the store") })
      let second = try startStoreServer("two")
      let secondAddress = try await second.listeningAddress()
      var acknowledged: [String] = []
      for _ in 0..<2 {
        let result = try await enqueueThrough(firstAddress)
        #expect(result.status == 0, "\(result.stderr)")
        acknowledged += Workbench.runID(result.stdout).map { [$0] } ?? []
      }
      first.signal(SIGSTOP)
      #expect(
        await second.waitForOutput { _, stderr in stderr.contains("this server leads the store") }, "\(second.stderr)")
      for _ in 0..<2 {
        let result = try await enqueueThrough(secondAddress)
        #expect(result.status == 0, "\(result.stderr)")
        acknowledged += Workbench.runID(result.stdout).map { [$0] } ?? []
      }
      first.signal(SIGCONT)
      let late = try await enqueueThrough(firstAddress)
      #expect(late.status != 0, "a deposed leader acknowledged an enqueue: \(late.stdout)")
      #expect(await first.waitForExit() != 0)
      #expect(
        first.stderr.contains("lost the lead of the store") || first.stderr.contains("stops leading the store"),
        "\(first.stderr)")
      let listed = try await GPSProcess.run(["flow-run", "ls", "--output", "json", "--server", secondAddress])
      let runs = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])
      #expect(Set(runs.compactMap { $0["id"] as? String }) == Set(acknowledged), "\(listed.stdout)")
      let verify = try await GPSProcess.run(["history", "verify", "--data-dir", root.path + "/two"])
      #expect(verify.status == 0, "\(verify.stderr)")
      second.signal(SIGTERM)
      #expect(await second.waitForExit() == 0)
    }
  }
}
