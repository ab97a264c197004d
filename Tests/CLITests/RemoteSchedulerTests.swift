import Control
import Crypto
import Flows
import Foundation
import GPSModel
import GPSTestSupport
import GRPCCore
import GRPCNIOTransportHTTP2
import Queue
import RPC
import ReferenceFlow
import Services
import SwiftProtobuf
import Testing

/// Schedulers in their own processes share one server's runs.
@Suite struct RemoteSchedulerTests {
  @Test func twoRemoteSchedulersShareTheRunsAndAKilledOnesRunsAreRequeued() async throws {
    try await withTemporaryDirectory { root in
      // Each call to B takes a second, so runs are in flight when a scheduler dies.
      let bench = try await Workbench(root: root, bArguments: ["--latency", "1s"])
      // Leases of 3 s: the survivor renews each a second, so a machine stalled for a second or two
      // does not expire them (a run whose lease expires twice is Crashed: one re-queue, the
      // deployment's crash policy), and the dead scheduler's expire soon.
      let (server, address) = try await bench.startServer(["--no-scheduler", "--lease-duration", "3s"])
      // The backlog comes first: eight runs, twice the slots of both schedulers, so each holds runs
      // from its first claim until the backlog is gone (at least two seconds), however slowly a
      // loaded machine enqueues. (Runs enqueued while the schedulers worked could trickle in slower
      // than the survivor finished them, and it took every one.)
      let ids = try await withControlClient(try ServiceAddress(parsing: address, what: "address")) { control in
        var ids: [String] = []
        for index in 0..<8 {
          ids.append(
            try await control.enqueue(
              .with {
                $0.deployment = "server-flow/MyPrefectDeployer"
                $0.parametersJson = #"{"data_info": {"object_storage_urls": ["a"], "dataset": "d\#(index)"}}"#
              }
            ).run.id)
        }
        return ids
      }
      func scheduler(_ id: String) throws -> GPSProcess {
        try GPSProcess(
          [
            "scheduler", "--data-dir", bench.data, "--a", bench.aAddress, "--b", bench.bAddress, "--concurrency", "2",
            "--id", id,
          ])
      }
      let doomed = try scheduler("doomed")
      let survivor = try scheduler("survivor")
      // Kill one scheduler while it holds a run: its claim is the run's latest and the run has not
      // finished.
      try await eventually("the doomed scheduler to hold a run") {
        var holder: [RunID: String] = [:]
        for (_, event) in try bench.history() {
          guard let run = event.run else { continue }
          switch event.kind {
          case .claimed(let claim): holder[run] = claim.scheduler
          case .completed, .failed, .timedOut, .cancelled, .crashed, .leaseExpired: holder[run] = nil
          default: break
          }
        }
        return holder.values.contains("doomed")
      }
      doomed.signal(SIGKILL)
      _ = await doomed.waitForExit()
      try await eventually("every run to complete") {
        let runs = try await bench.gps(["flow-run", "ls", "--state", "Completed", "--output", "json"])
        return (try JSONSerialization.jsonObject(with: Data(runs.stdout.utf8)) as? [Any])?.count == ids.count
      }
      let events = try bench.history()
      // Each run completed exactly once; the dead scheduler's leases expired and its runs were
      // re-queued and finished by the survivor.
      for id in ids {
        let completions = events.filter { $0.1.run?.description == id && $0.1.typeName == "RunCompleted" }
        #expect(completions.count == 1, "run \(id)")
      }
      let expired = events.compactMap { _, event -> RunID? in
        if case .leaseExpired(let lease) = event.kind, lease.scheduler == "doomed" { return event.run }
        return nil
      }
      #expect(!expired.isEmpty)
      for run in expired {
        #expect(events.contains { $0.1.run == run && $0.1.typeName == "RunRequeued" })
        let lastClaim = events.last { _, event in
          if case .claimed = event.kind { return event.run == run }
          return false
        }
        if case .claimed(let claim)? = lastClaim?.1.kind { #expect(claim.scheduler == "survivor") }
      }
      survivor.signal(SIGTERM)
      #expect(await survivor.waitForExit() == 0)
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0)
    }
  }

}
