import Flows
import Foundation
import GPSModel
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOPosix
import Queue
import RPC
import ServiceLifecycle
import Synchronization

// The long-running parts of `gps server start`, each a `Service` in the server's one
// `ServiceGroup`. The group starts them together and, on graceful shutdown, stops them one at a
// time in the reverse of their order (see `ControlServer.run()`): the scheduler drains first,
// then the control API ends its streams and stops, then the web (which answers to the end), then
// retention, the sealed-segment check and the queue's maintenance. A service ends only when told
// to: one that ended on its own while another shuts down would stop the group.

/// The queue's timers (late runs, expired leases) and the run index's commits.
struct QueueMaintenance: Service {
  let queue: RunQueue
  /// Open while this server leads (always, without a store): a standby writes nothing.
  let leading: Latch

  func run() async throws {
    guard await leading.wait() else { return }
    do {
      try await cancelWhenGracefulShutdown { try await queue.maintain() }
    } catch is CancellationError {}
  }
}

/// The check opening skipped: every batch of every sealed segment (lengths, checksums,
/// continuity), on a thread of the blocking pool while the server serves. Damage is logged as an
/// error naming the segment, offset and sequence; the server goes on (readers refuse a damaged
/// batch). A shutdown does not wait for the check.
struct SealedSegmentCheck: Service {
  let directory: String
  let ready: Latch
  let logger: Logger

  func run() async throws {
    let directory = directory
    // After the server said it is ready: the check is not part of starting.
    guard await ready.wait() else { return }
    let started = ContinuousClock.now
    let outcome = await cancelWhenGracefulShutdown {
      await onBlockingPool {
        Result { () throws(QueueError) in try LogVerifier(directory: directory).verify(thorough: false) }
      }
    }
    switch outcome {
    case nil:
      return  // shutting down
    case .success(let report)? where report.isIntact:
      logger.info(
        "checked the log's sealed segments",
        metadata: [
          "segments": "\(report.segments)", "bytes": "\(report.bytes)",
          "seconds": "\((ContinuousClock.now - started).components.seconds)",
        ])
    case .success(let report)?:
      logger.error(
        "the log is damaged: \(report.problem ?? ""); `gps log verify` shows it, `gps log repair` cuts the log there")
    case .failure(let error)?:
      logger.error("checking the log's sealed segments failed: \(error.message)")
    }
    try? await gracefulShutdown()
  }
}

/// Archives what is older than the retention, now and every `checkEvery`. A failure is logged and
/// tried again at the next check: retention never stops the server.
struct RetentionService: Service {
  let queue: RunQueue
  let retention: ControlServer.Retention
  /// Open once this server leads (at once on files): only the leader archives a store's log.
  let leading: Latch
  let logger: Logger

  func run() async throws {
    do {
      try await cancelWhenGracefulShutdown {
        guard await leading.wait() else { return }
        try await retain()
      }
    } catch is CancellationError {}
  }

  func retain() async throws {
    let age = retention.age
    var heldBy: RunID?
    while true {
      let cutoff = Timestamp(Date()) - age
      // Files are moved and the note waits for its fsync: on a blocking pool's thread.
      let queue = queue
      let delete = retention.delete
      let outcome = await onBlockingPool {
        Result { () throws(QueueError) in
          try queue.archive(
            before: .time(cutoff), delete: delete, archivedBy: "retention",
            reason: "older than \(age) (before \(cutoff))")
        }
      }
      guard let outcome else { return }  // cancelled: shutting down
      do throws(QueueError) {
        let report = try outcome.get()
        if let archived = report.archived {
          logger.info(
            "\(retention.delete ? "deleted" : "archived") \(report.segments.count) log segments older than the retention",
            metadata: [
              "sequences": "\(archived.lowerBound)-\(archived.upperBound)", "bytes": "\(report.bytes)",
              "log_start": "\(report.logStart)", "note": "\(report.noteSequence ?? 0)",
            ])
        }
        if let run = report.heldBy, run != heldBy, let why = report.stoppedBecause {
          logger.notice("retention waits for a run to finish: \(why)")
        }
        heldBy = report.heldBy
      } catch {
        logger.warning("archiving log segments failed: \(error.message); trying again in \(retention.checkEvery)")
      }
      try await Task.sleep(for: retention.checkEvery)
    }
  }
}

/// What else serves the queue in this process (the web server): from the start until the control
/// API and the scheduler have stopped.
struct CompanionService: Service {
  let companion: any ControlCompanion
  let engine: Engine
  let ready: Latch

  func run() async throws {
    guard await ready.wait() else { return }
    try await companion.run(engine: engine)
  }
}

/// The control API: serves until graceful shutdown, records its address in the data directory
/// while it listens, then ends its streams and stops; a peer that cannot be reached (a cut link)
/// would hold a graceful shutdown open for as long as its connection lives, so after
/// `shutdownTimeout` the server closes what is left.
struct ControlAPIService: Service {
  let server: GRPCServer<HTTP2ServerTransport.Posix>
  let transport: HTTP2ServerTransport.Posix
  let service: ControlService
  let requested: ServiceAddress
  let dataDirectory: String
  let boundPort: BoundPort
  let shutdownTimeout: Duration
  /// Opened once the control API listens and `onReady` has run.
  let ready: Latch
  let logger: Logger
  let onReady: @Sendable (ServiceAddress) -> Void

  func run() async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask {
        do {
          try await server.serve()
        } catch {
          throw ServiceServer.explain(error, address: requested)
        }
      }
      guard let bound = try? await transport.listeningAddress, let address = ServiceAddress(bound) else {
        try await group.waitForAll()
        return
      }
      boundPort.port = address.port
      let addressFile = ControlAddress.file(in: dataDirectory)
      try ControlAddress.write(address, to: addressFile)
      defer { ControlAddress.remove(addressFile, ifItIs: address) }
      logger.info("control server listening", metadata: ["address": "\(address)"])
      onReady(address)
      ready.open()
      let timeout = shutdownTimeout
      group.addTask {
        try await gracefulShutdown()
        logger.info("ending streams and stopping the control server")
        service.stop()
        server.beginGracefulShutdown()
        try await Task.sleep(for: timeout)
        throw ShutdownTimedOut()
      }
      do {
        try await group.next()
      } catch is ShutdownTimedOut {
        logger.warning(
          "connections still open \(timeout) after shutdown began (a peer unreachable?): closing them",
          metadata: ["timeout": "\(timeout)"])
      }
      group.cancelAll()
    }
  }
}

/// The scheduler in the server's process: claims and runs the embedded worker's deployments until
/// graceful shutdown, then stops claiming and lets its runs in flight finish within `grace`;
/// after that it abandons them (their leases expire and their crash policy applies).
struct EmbeddedScheduler: Service {
  let queue: RunQueue
  let worker: ControlServer.EmbeddedWorker
  let options: SchedulerOptions
  let grace: Duration
  let ready: Latch
  /// A standby's scheduler claims nothing until its server leads.
  let leading: Latch
  let logger: Logger

  func run() async throws {
    guard await ready.wait(), await leading.wait() else { return }
    let (queue, registry, options, grace, logger) = (queue, worker.registry, options, grace, logger)
    try await worker.withDependencies { dependencies in
      let cached = try Scheduler.cachedResults(in: QueueHistory(directory: queue.directory), registry: registry)
      let scheduler = Scheduler(
        queue: queue, registry: registry, dependencies: dependencies, options: options, logger: logger,
        cachedResults: cached)
      try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await scheduler.run() }
        group.addTask {
          try await gracefulShutdown()
          logger.info(
            "stopping: no new claims; waiting for runs in flight",
            metadata: ["runs": "\(scheduler.activeRuns)", "grace": "\(grace)"])
          scheduler.stopClaiming()
          try await Task.sleep(for: grace)
          logger.warning(
            "grace period over: abandoning runs in flight (their leases expire and their crash policy applies)",
            metadata: ["runs": "\(scheduler.activeRuns)"])
          throw CancellationError()
        }
        // The scheduler returns once drained; then the grace timer is no longer needed.
        do {
          try await group.next()
        } catch is CancellationError {}
        group.cancelAll()
      }
    }
  }
}

/// Runs blocking `work` (file reads, fsync waits) on a thread of NIO's blocking pool, never on
/// Swift's cooperative pool. A cancelled caller stops waiting and gets nil; the work then
/// finishes on its thread, unobserved.
func onBlockingPool<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T? {
  let waiting = Mutex<CheckedContinuation<T?, Never>?>(nil)
  return await withTaskCancellationHandler {
    await withCheckedContinuation { continuation in
      let cancelled = waiting.withLock { waiting in
        guard !Task.isCancelled else { return true }
        waiting = continuation
        return false
      }
      guard !cancelled else { return continuation.resume(returning: nil) }
      NIOThreadPool.singleton.submit { _ in
        let value = work()
        waiting.withLock { $0.take() }?.resume(returning: value)
      }
    }
  } onCancel: {
    waiting.withLock { $0.take() }?.resume(returning: nil)
  }
}

/// `work`'s answer (or error), computed on NIO's blocking pool because it may read files; a
/// cancelled caller stops waiting with a `CancellationError`.
func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
  guard let outcome = await onBlockingPool({ Result { try work() } }) else { throw CancellationError() }
  return try outcome.get()
}

/// Runs blocking `work` on a thread of NIO's blocking pool and waits for it to its end, even when
/// the caller is cancelled: for work whose result must not be dropped unobserved.
func toTheEndOnBlockingPool<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
  await withCheckedContinuation { continuation in
    NIOThreadPool.singleton.submit { _ in continuation.resume(returning: work()) }
  }
}

/// Opens once, when the server is ready; services that start after that wait for it.
final class Latch: Sendable {
  private struct State {
    var open = false
    var next = 0
    var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
  }

  private let state = Mutex(State())

  func open() {
    let waiters = state.withLock { state in
      state.open = true
      defer { state.waiters = [:] }
      return Array(state.waiters.values)
    }
    for waiter in waiters { waiter.resume() }
  }

  /// Waits until the latch opens (true), or until graceful shutdown or cancellation (false).
  func wait() async -> Bool {
    let id = state.withLock { state in
      defer { state.next += 1 }
      return state.next
    }
    await cancelWhenGracefulShutdown {
      await withTaskCancellationHandler {
        await withCheckedContinuation { continuation in
          let now = self.state.withLock { state in
            guard !state.open, !Task.isCancelled else { return true }
            state.waiters[id] = continuation
            return false
          }
          if now { continuation.resume() }
        }
      } onCancel: {
        self.state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
      }
    }
    return state.withLock { $0.open }
  }
}

/// The connections did not close within ``ControlServer/Configuration/shutdownTimeout``.
struct ShutdownTimedOut: Error {}

/// The port the control API listens on, once it does (the access check asks on every call).
final class BoundPort: Sendable {
  private let value = Mutex<Int?>(nil)

  var port: Int? {
    get { value.withLock { $0 } }
    set { value.withLock { $0 = newValue } }
  }
}
