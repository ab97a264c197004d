import Crypto
public import Foundation
public import GRPCCore
public import Logging
public import Queue
public import RPC
import SwiftProtobuf
import Synchronization

/// Options of a ``Scheduler``.
public struct SchedulerOptions: Sendable {
  /// Names the scheduler in claims and leases.
  public var id: String
  /// Runs executed at once.
  public var concurrency: Int
  /// How often leases are renewed (well within the queue's lease duration).
  public var heartbeatInterval: Duration
  /// The longest an idle scheduler waits before looking again; new work wakes it at once.
  public var idleWait: Duration

  public init(
    id: String = "scheduler-\(ProcessInfo.processInfo.processIdentifier)-\(UInt16.random(in: 0...UInt16.max))",
    concurrency: Int = 16, heartbeatInterval: Duration = .seconds(5), idleWait: Duration = .seconds(1)
  ) {
    self.id = id
    self.concurrency = max(1, concurrency)
    self.heartbeatInterval = heartbeatInterval
    self.idleWait = idleWait
  }
}

/// Executes runs: claims ready runs under a lease, runs up to `concurrency` of them at once, renews
/// their leases, and records every step attempt as events. Wakes on enqueue; honours cancellation
/// (in-flight calls are cancelled), step and run timeouts, and lease loss (it stops work it no
/// longer owns, without reporting).
public final class Scheduler: Sendable {
  public let options: SchedulerOptions
  let queue: any SchedulerQueue
  let registry: DeploymentRegistry
  let clients: ServiceClients
  let logger: Logger
  let random: @Sendable () -> Double
  let active = Mutex<[RunID: ActiveRun]>([:])
  let capacity = WakeSignal()
  let cache = Mutex<[String: [UInt8]]>([:])

  /// A run being executed, and how to stop it.
  final class ActiveRun: Sendable {
    enum Stop: Sendable { case cancelled, leaseLost }
    let lease: LeaseToken
    let stopSignal = WakeSignal()
    let stop = Mutex<Stop?>(nil)

    init(lease: LeaseToken) { self.lease = lease }

    func request(_ reason: Stop) {
      let first = stop.withLock { stop in
        defer { stop = stop ?? reason }
        return stop == nil
      }
      if first { stopSignal.signal() }
    }
  }

  public init(
    queue: any SchedulerQueue, registry: DeploymentRegistry, clients: ServiceClients,
    options: SchedulerOptions = SchedulerOptions(), logger: Logger = Logger(label: "gps.scheduler"),
    random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
  ) {
    self.queue = queue
    self.registry = registry
    self.clients = clients
    self.options = options
    self.logger = logger
    self.random = random
  }

  /// Runs until the task is cancelled.
  public func run() async throws {
    let work = WakeSignal()
    let cancelRequests = WakeSignal()
    queue.notifyWhenWorkArrives(work)
    queue.notifyOnCancelRequests(cancelRequests)
    logger.info("scheduler started", metadata: ["scheduler": "\(options.id)", "concurrency": "\(options.concurrency)"])
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { await self.heartbeats(cancelRequests: cancelRequests) }
      while !Task.isCancelled {
        if active.withLock({ $0.count }) >= options.concurrency {
          await capacity.wait()
          continue
        }
        let claim: Claim?
        do {
          claim = try await queue.claim(scheduler: options.id)
        } catch let error as QueueError where error.code == .writerStopped || error.code == .closed {
          throw error
        } catch {
          logger.warning("claim failed", metadata: ["error": "\(error)"])
          await work.wait(timeout: options.idleWait)
          continue
        }
        if let claim {
          let run = ActiveRun(lease: claim.token)
          active.withLock { $0[claim.run.id] = run }
          group.addTask { await self.execute(claim, run) }
          continue
        }
        var wait = options.idleWait
        if let deadline = queue.nextDeadline {
          wait = min(wait, max(.milliseconds(1), deadline - SystemClock().now()))
        }
        await work.wait(timeout: wait)
      }
      group.cancelAll()
    }
  }

  // MARK: Leases

  func heartbeats(cancelRequests: WakeSignal) async {
    while !Task.isCancelled {
      await cancelRequests.wait(timeout: options.heartbeatInterval)
      for run in active.withLock({ Array($0.values) }) {
        do {
          let reply = try await queue.heartbeat(run.lease)
          if reply.cancelRequested { run.request(.cancelled) }
        } catch let error as QueueError where error.code == .leaseLost || error.code == .notFound {
          logger.warning(
            "lease lost; stopping the run", metadata: ["run": "\(run.lease.runID)", "error": "\(error.message)"])
          run.request(.leaseLost)
        } catch {
          logger.warning("heartbeat failed", metadata: ["run": "\(run.lease.runID)", "error": "\(error)"])
        }
      }
    }
  }

  // MARK: Runs

  enum Outcome: Sendable {
    case completed(result: [UInt8], type: String, cached: Bool)
    case failed(String)
    case timedOut(String)
    case stopped(ActiveRun.Stop)
  }

  func execute(_ claim: Claim, _ run: ActiveRun) async {
    let lease = claim.token
    defer {
      active.withLock { $0[claim.run.id] = nil }
      capacity.signal()
    }
    let started = ContinuousClock.now
    do {
      let deployment: Deployment
      let parameters: ValidatedParameters
      do {
        deployment = try registry.deployment(named: claim.run.deployment)
        parameters = try deployment.parameters.validate(json: claim.run.parametersJSON)
      } catch {
        try await queue.report(lease, .failed(.with { $0.reason = "cannot start: \(error.message)" }))
        return
      }
      try await queue.report(lease, .started(.init()))
      let timeout = claim.run.timeout > .zero ? claim.run.timeout : deployment.timeout
      let outcome = await withTaskGroup(of: Outcome?.self) { group -> Outcome in
        group.addTask { await self.steps(of: deployment.flow, claim: claim, parameters: parameters, run: run) }
        group.addTask {
          await run.stopSignal.wait()
          return Task.isCancelled ? nil : run.stop.withLock { $0 }.map(Outcome.stopped)
        }
        if timeout > .zero {
          group.addTask {
            try? await Task.sleep(for: timeout)
            return Task.isCancelled ? nil : .timedOut("the run exceeded its timeout of \(timeout)")
          }
        }
        var first: Outcome?
        while first == nil, let next = await group.next() { first = next }
        group.cancelAll()
        return first ?? .stopped(.leaseLost)
      }
      switch outcome {
      case .completed(let result, let type, let cached):
        try await queue.report(
          lease,
          .completed(
            .with {
              $0.result = Data(result)
              $0.resultType = type
              $0.cached = cached
            }))
      case .failed(let reason):
        try await queue.report(lease, .failed(.with { $0.reason = reason }))
      case .timedOut(let reason):
        try await queue.report(lease, .timedOut(.with { $0.reason = reason }))
      case .stopped(.cancelled):
        try await queue.report(lease, .cancelled(.with { $0.reason = "stopped by scheduler \(options.id)" }))
      case .stopped(.leaseLost):
        logger.warning("run abandoned: its lease was lost", metadata: ["run": "\(claim.run.id)"])
        return
      }
      logger.info(
        "run finished",
        metadata: [
          "run": "\(claim.run.id)", "deployment": "\(claim.run.deployment)", "outcome": "\(outcome)",
          "duration": "\(ContinuousClock.now - started)",
        ])
    } catch let error as QueueError where error.code == .leaseLost {
      logger.warning("run abandoned: \(error.message)", metadata: ["run": "\(claim.run.id)"])
    } catch {
      logger.error("could not record the run's progress", metadata: ["run": "\(claim.run.id)", "error": "\(error)"])
    }
  }

  /// Runs the flow's steps in order with retries; nil when stopped by cancellation.
  func steps(of flow: Flow, claim: Claim, parameters: ValidatedParameters, run: ActiveRun) async -> Outcome? {
    let lease = claim.token
    var results: [String: [UInt8]] = [:]
    var allCached = true
    do {
      for step in flow.steps {
        var attempt: UInt32 = 1
        while true {
          let context = StepContext(
            runID: claim.run.id, deployment: claim.run.deployment, step: step.name, attempt: attempt,
            parameters: parameters, results: results, clients: clients, timeout: step.timeout)
          let digest = Array(SHA256.hash(data: try step.input(context)))
          try await queue.report(
            lease,
            .attemptStarted(
              .with {
                $0.step = step.name
                $0.attempt = attempt
                $0.inputDigest = Data(digest)
              }))
          let cacheKey = "\(claim.run.deployment)/\(step.name)/\(digest.hexString)"
          if step.cacheResults, let cached = cache.withLock({ $0[cacheKey] }) {
            try await queue.report(
              lease,
              .attemptSucceeded(
                .with {
                  $0.step = step.name
                  $0.attempt = attempt
                  $0.result = Data(cached)
                  $0.cached = true
                }))
            results[step.name] = cached
            break
          }
          let start = ContinuousClock.now
          let result = await Self.attempt(step, context)
          let duration = ContinuousClock.now - start
          if Task.isCancelled {
            // Cancelled by a user: the interrupted attempt is part of the history. After a lost
            // lease nothing more is reported: the run is no longer ours.
            if run.stop.withLock({ $0 }) == .cancelled {
              try await queue.report(
                lease,
                .attemptFailed(
                  .with {
                    $0.step = step.name
                    $0.attempt = attempt
                    $0.statusCode = Int32(RPCError.Code.cancelled.rawValue)
                    $0.statusName = RPCError.Code.cancelled.canonicalName
                    $0.message = "the run was cancelled during the attempt"
                    $0.durationMicros = duration.micros
                  }))
            }
            return nil
          }
          switch result {
          case .success(let output):
            try await queue.report(
              lease,
              .attemptSucceeded(
                .with {
                  $0.step = step.name
                  $0.attempt = attempt
                  $0.result = Data(output)
                  $0.durationMicros = duration.micros
                }))
            if step.cacheResults { cache.withLock { $0[cacheKey] = output } }
            results[step.name] = output
            allCached = false
          case .failure(let error):
            let code = error.code
            let retryable = step.retry.retryableCodes.contains(code) && Int(attempt) < step.retry.maxAttempts
            try await queue.report(
              lease,
              .attemptFailed(
                .with {
                  $0.step = step.name
                  $0.attempt = attempt
                  $0.statusCode = Int32(code.rawValue)
                  $0.statusName = code.canonicalName
                  $0.message = error.message
                  $0.retryable = retryable
                  $0.durationMicros = duration.micros
                }))
            if retryable {
              let backoff = step.retry.backoff(after: Int(attempt), random: random())
              try await queue.report(
                lease,
                .retryScheduled(
                  .with {
                    $0.step = step.name
                    $0.nextAttempt = attempt + 1
                    $0.retryAtMicros = (SystemClock().now() + backoff).micros
                  }))
              try await Task.sleep(for: backoff)
              attempt += 1
              continue
            }
            let reason =
              "step \(step.name) failed after \(attempt) attempt\(attempt == 1 ? "" : "s"): \(code.canonicalName): \(error.message)"
            return code == .deadlineExceeded ? .timedOut(reason) : .failed(reason)
          }
          break
        }
      }
    } catch is CancellationError {
      return nil
    } catch let error as QueueError where error.code == .leaseLost {
      return .stopped(.leaseLost)
    } catch {
      if Task.isCancelled { return nil }
      return .failed("the scheduler could not record the run: \(error)")
    }
    guard let last = flow.steps.last, let result = results[last.name] else { return .failed("the flow has no result") }
    return .completed(result: result, type: last.resultType, cached: allCached)
  }

  /// One attempt of a step, limited by its timeout; every error becomes a gRPC status.
  static func attempt(_ step: Step, _ context: StepContext) async -> Result<[UInt8], RPCError> {
    await withTaskGroup(of: Result<[UInt8], RPCError>?.self) { group in
      group.addTask {
        do {
          return .success(try await step.body(context))
        } catch let error as RPCError {
          return .failure(error)
        } catch is CancellationError {
          return Task.isCancelled ? nil : .failure(RPCError(code: .cancelled, message: "cancelled"))
        } catch {
          return .failure(RPCError(code: .unknown, message: "\(error)"))
        }
      }
      group.addTask {
        try? await Task.sleep(for: step.timeout)
        return Task.isCancelled
          ? nil : .failure(RPCError(code: .deadlineExceeded, message: "the step timed out after \(step.timeout)"))
      }
      var result: Result<[UInt8], RPCError>?
      while result == nil, let next = await group.next() { result = next }
      group.cancelAll()
      return result ?? .failure(RPCError(code: .cancelled, message: "cancelled"))
    }
  }
}
