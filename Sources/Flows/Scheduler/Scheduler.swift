import Crypto
import Foundation
public import GPSModel
import GRPCCore
public import Logging
import RPC
import SwiftProtobuf
import Synchronization

/// Executes runs: claims ready runs under a lease, runs up to `concurrency` of them at once, renews
/// their leases, and records every step attempt as events. Wakes on enqueue; honours cancellation
/// (in-flight calls are cancelled), step and run timeouts, and lease loss (it stops work it no
/// longer owns, without reporting).
public final class Scheduler: Sendable {
  public let options: SchedulerOptions
  let queue: any SchedulerQueue
  /// Every time the scheduler reads and every wait it makes: timeouts, backoffs, heartbeats,
  /// attempt durations and the times it reports.
  let clock: any WallClock
  let registry: DeploymentRegistry
  let dependencies: Dependencies
  /// Registered versions, as runs enqueued against them are validated at start.
  let catalog = DeploymentCatalog()
  let versions = Mutex<[String: DeploymentVersion]>([:])
  /// The deployments claims ask for: those the scheduler serves.
  let served: Set<String>
  let logger: Logger
  let random: @Sendable () -> Double
  let active = Mutex<[RunID: ActiveRun]>([:])
  let capacity = WakeSignal()
  let timers: RunTimer
  let cache = Mutex<[String: [UInt8]]>([:])
  let draining = Atomic<Bool>(false)
  /// The length of the leases the queue grants, learnt from claims: heartbeats come at least three
  /// times per lease.
  let leaseLength = Mutex<Duration?>(nil)
  /// Wakes the claim loop: new work in the queue, or ``stopClaiming()``.
  let work = WakeSignal()
  /// A busy scheduler claims runs this many at a time.
  static let claimBatch = 8

  /// - Parameter cachedResults: results of cacheable steps from earlier runs, e.g. from
  ///   ``cachedResults(in:registry:)``, so the cache outlives a restart.
  /// - Parameter clock: tests pass a ``ManualClock`` (the queue's own, for a local queue) so that
  ///   timeouts, backoffs and heartbeats happen when the test moves it.
  public init(
    queue: any SchedulerQueue, registry: DeploymentRegistry, dependencies: Dependencies = Dependencies(),
    options: SchedulerOptions = SchedulerOptions(), logger: Logger = Logger(label: "gps.scheduler"),
    cachedResults: [String: [UInt8]] = [:], clock: any WallClock = SystemClock(),
    random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
  ) {
    self.queue = queue
    self.clock = clock
    timers = RunTimer(clock: clock)
    self.registry = registry
    served = Set(registry.deployments.keys)
    self.dependencies = dependencies
    self.options = options
    self.logger = logger
    self.random = random
    cache.withLock { $0 = cachedResults }
  }

  /// Stops claiming: ``run()`` returns once the runs in flight have finished. Cancel its task to
  /// stop them too (their leases then expire and their crash policy applies).
  public func stopClaiming() {
    draining.store(true, ordering: .sequentiallyConsistent)
    capacity.signal()
    work.signal()
  }

  /// Runs executed right now.
  public var activeRuns: Int { active.withLock { $0.count } }

  /// Registers the scheduler's deployments with the queue, trying again every `idleWait` while the
  /// queue cannot be reached; a definition the queue refuses is thrown.
  func registerDeployments() async throws {
    let definitions = registry.definitions
    guard !definitions.isEmpty else { return }
    while !Task.isCancelled, !draining.load(ordering: .sequentiallyConsistent) {
      do {
        let versions = try await queue.register(definitions, worker: options.id)
        logger.info(
          "deployments registered",
          metadata: [
            "deployments": "\(zip(definitions, versions).map { "\($0.name) v\($1)" }.joined(separator: ", "))"
          ])
        return
      } catch let error as QueueError where error.code == .invalidArgument {
        throw error
      } catch let error as QueueError where error.code == .writerStopped || error.code == .closed {
        throw error
      } catch {
        logger.warning("could not register the deployments; trying again", metadata: ["error": "\(error)"])
        await work.wait(timeout: options.idleWait, clock: clock)
      }
    }
  }

  /// Runs until the task is cancelled, or until ``stopClaiming()`` and the runs in flight finish.
  public func run() async throws {
    try await registerDeployments()
    let cancelRequests = WakeSignal()
    queue.notifyWhenWorkArrives(work)
    queue.notifyOnCancelRequests(cancelRequests)
    logger.info("scheduler started", metadata: ["scheduler": "\(options.id)", "concurrency": "\(options.concurrency)"])
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { await self.heartbeats(cancelRequests: cancelRequests) }
      group.addTask { await self.enforceTimeouts() }
      var gathering = false
      while !Task.isCancelled {
        if draining.load(ordering: .sequentiallyConsistent) {
          if active.withLock({ $0.isEmpty }) { break }
          await capacity.wait()
          continue
        }
        let free = options.concurrency - active.withLock { $0.count }
        if free <= 0 {
          await capacity.wait()
          continue
        }
        // When busy, let a claim batch's worth of slots free up, for a millisecond at most, so one
        // claim commit takes several runs; an idle scheduler claims at once.
        if free < Self.claimBatch, free < options.concurrency, !gathering {
          gathering = true
          // Real time even under a test's clock: this batches commits, it is no deadline of a run.
          await capacity.wait(timeout: .milliseconds(1))
          continue
        }
        gathering = false
        let claims: [Claim]
        do {
          // Several at once when many are ready: one commit instead of one per run.
          claims = try await queue.claim(
            scheduler: options.id, limit: min(free, Self.claimBatch * 2), deployments: served)
        } catch let error as QueueError where error.code == .writerStopped || error.code == .closed {
          throw error
        } catch {
          logger.warning("claim failed", metadata: ["error": "\(error)"])
          await work.wait(timeout: options.idleWait, clock: clock)
          continue
        }
        if let first = claims.first {
          // In the queue's own time: the claim is the moment the run's Pending state began.
          let length = first.lease.expiresAt - first.run.stateSince
          let changed = leaseLength.withLock { known -> Bool in
            guard length > .zero else { return false }
            defer { known = length }
            guard let known else { return true }
            return length < known * 0.9 || length > known * 1.1
          }
          // The heartbeat loop may be waiting out a default interval longer than the lease: it
          // must renew within a third of it, starting now.
          if changed { cancelRequests.signal() }
        }
        for claim in claims {
          let run = ActiveRun(lease: claim.token)
          active.withLock { $0[claim.run.id] = run }
          group.addTask { await self.execute(claim, run) }
        }
        if !claims.isEmpty { continue }
        var wait = options.idleWait
        if let deadline = queue.nextDeadline {
          wait = min(wait, max(.milliseconds(1), deadline - clock.now()))
        }
        await work.wait(timeout: wait, clock: clock)
      }
      group.cancelAll()
    }
  }
}
