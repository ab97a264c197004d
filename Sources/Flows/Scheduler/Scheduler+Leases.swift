import Crypto
import Foundation
import GPSModel
import GRPCCore
import Logging
import RPC
import SwiftProtobuf
import Synchronization

extension Scheduler {

  func heartbeats(cancelRequests: WakeSignal) async {
    while !Task.isCancelled {
      let lease = leaseLength.withLock { $0 }
      await cancelRequests.wait(
        timeout: lease.map { min(options.heartbeatInterval, $0 / 3) } ?? options.heartbeatInterval, clock: clock)
      let runs = active.withLock { Array($0.values) }.filter { !$0.isFinishing }
      guard !runs.isEmpty else { continue }
      // Every lease in one call: a round takes one round trip however many runs are in flight.
      let outcomes: [Result<HeartbeatReply, QueueError>]
      do {
        outcomes = try await queue.heartbeat(all: runs.map(\.lease))
      } catch {
        if !Task.isCancelled {
          logger.warning("heartbeat failed", metadata: ["runs": "\(runs.count)", "error": "\(error)"])
        }
        continue
      }
      for (run, outcome) in zip(runs, outcomes) {
        switch outcome {
        case .success(let reply):
          if reply.cancelRequested { run.request(.cancelled) }
        case .failure(let error):
          // A run that finished while its heartbeat was on the way gave its lease back by
          // finishing: nothing is wrong, and nothing is said.
          guard isActive(run), !run.isFinishing, !Task.isCancelled else { continue }
          if error.code == .leaseLost || error.code == .notFound {
            logger.warning(
              "lease lost; stopping the run", metadata: ["run": "\(run.lease.runID)", "error": "\(error.message)"])
            run.request(.leaseLost)
          } else {
            logger.warning("heartbeat failed", metadata: ["run": "\(run.lease.runID)", "error": "\(error)"])
          }
        }
      }
    }
  }

  /// Whether `run` is still one this scheduler executes.
  func isActive(_ run: ActiveRun) -> Bool {
    active.withLock { $0[run.lease.runID] === run }
  }

  /// Times out runs and attempts whose deadline has passed: one timer for all runs, woken when a
  /// run or attempt with an earlier deadline starts.
  func enforceTimeouts() async {
    while !Task.isCancelled {
      let now = clock.now()
      var next: Timestamp?
      for run in active.withLock({ Array($0.values) }) {
        run.expire(now: now)
        if let deadline = run.nextDeadline, deadline > now { next = min(next ?? deadline, deadline) }
      }
      await timers.wait(until: next)
    }
  }
}
