import Crypto
import Foundation
import GPSModel
import GRPCCore
import Logging
import RPC
import SwiftProtobuf
import Synchronization

/// The step executor: a claimed run's steps, attempts, retries and final events.
extension Scheduler {

  enum Outcome: Sendable {
    case completed(result: [UInt8], type: String, cached: Bool)
    case failed(String)
    case timedOut(String)
    case stopped(ActiveRun.Stop)

    /// For the log: the state and the reason, without the result's bytes.
    var summary: String {
      switch self {
      case .completed(let result, let type, let cached):
        "\(cached ? "Cached" : "Completed") (\(type), \(result.count) bytes)"
      case .failed(let reason): "Failed: \(reason)"
      case .timedOut(let reason): "TimedOut: \(reason)"
      case .stopped(.cancelled): "Cancelled"
      case .stopped(.timedOut(let reason)): "TimedOut: \(reason)"
      case .stopped(.leaseLost): "abandoned: lease lost"
      }
    }
  }

  /// What the steps produced: the outcome (nil when stopped from outside) and events not yet
  /// recorded, which go into the same commit as the run's final event.
  struct StepsResult: Sendable {
    var outcome: Outcome?
    var pending: [RunEvent.OneOf_Kind]
  }

  func execute(_ claim: Claim, _ run: ActiveRun) async {
    let lease = claim.token
    defer {
      let remaining = active.withLock { active in
        active[claim.run.id] = nil
        return active.count
      }
      // The claim loop needs to hear only of the first free slot, of a claim batch's worth, and of
      // the last run ending: not of every run.
      let free = options.concurrency - remaining
      if free == 1 || free == Self.claimBatch || remaining == 0 || draining.load(ordering: .relaxed) {
        capacity.signal()
      }
    }
    let started = clock.now()
    do {
      let deployment: Deployment
      let parameters: ValidatedParameters
      do {
        deployment = try registry.deployment(named: claim.run.deployment)
        parameters = try await validate(claim.run, of: deployment)
      } catch let error as FlowsError {
        try await queue.report(lease, [.failed(.with { $0.reason = "cannot start: \(error.message)" })])
        return
      }
      let timeout = claim.run.timeout > .zero ? claim.run.timeout : deployment.timeout
      if timeout > .zero {
        run.setTimeout(timeout, now: clock.now())
        timers.signalIfEarlier(run.nextDeadline)
      }
      let result = await steps(of: deployment.flow, claim: claim, parameters: parameters, run: run)
      let pending = result.pending
      let outcome: Outcome =
        switch (result.outcome, run.stop) {
        case (let finished?, _): finished
        case (nil, .timedOut(let reason)?): .timedOut(reason)
        case (nil, .cancelled?): .stopped(.cancelled)
        // Cancelled from outside (the scheduler is stopping) or the lease was lost: abandon.
        case (nil, .leaseLost?), (nil, nil): .stopped(.leaseLost)
        }
      let final: RunEvent.OneOf_Kind
      switch outcome {
      case .completed(let result, let type, let cached):
        final = .completed(
          .with {
            $0.result = Data(result)
            $0.resultType = type
            $0.cached = cached
          })
      case .failed(let reason): final = .failed(.with { $0.reason = reason })
      case .timedOut(let reason): final = .timedOut(.with { $0.reason = reason })
      // The queue keeps the user's reason from the request; this says who stopped it.
      case .stopped(.cancelled): final = .cancelled(.with { $0.reason = "stopped by scheduler \(options.id)" })
      case .stopped(.timedOut(let reason)): final = .timedOut(.with { $0.reason = reason })
      case .stopped(.leaseLost):
        logger.warning("run abandoned: its lease was lost", metadata: ["run": "\(claim.run.id)"])
        return
      }
      run.markFinishing()
      try await queue.report(lease, pending + [final])
      logger.info(
        "run finished",
        metadata: [
          "run": "\(claim.run.id)", "deployment": "\(claim.run.deployment)", "outcome": "\(outcome.summary)",
          "duration": "\(clock.now() - started)",
        ])
    } catch let error as QueueError where error.code == .leaseLost {
      logger.warning("run abandoned: \(error.message)", metadata: ["run": "\(claim.run.id)"])
    } catch {
      logger.error("could not record the run's progress", metadata: ["run": "\(claim.run.id)", "error": "\(error)"])
    }
  }

  /// Validates the run's parameters again, against the deployment version it was enqueued with
  /// (the scheduler's own definition for a run enqueued without one).
  func validate(_ run: Run, of deployment: Deployment) async throws -> ValidatedParameters {
    guard run.deploymentVersion != 0 else {
      return try deployment.parameters.validate(json: run.parametersJSON, pool: deployment.flow.descriptors)
    }
    let key = "\(run.deployment)\u{0}\(run.deploymentVersion)"
    var version = versions.withLock { $0[key] }
    if version == nil {
      guard let found = try await queue.deployment(named: run.deployment, version: run.deploymentVersion) else {
        throw FlowsError(
          code: .unknownDeployment,
          message: "the queue has no version \(run.deploymentVersion) of deployment \(run.deployment)")
      }
      versions.withLock { $0[key] = found }
      version = found
    }
    return try catalog.deployment(version!).validate(json: run.parametersJSON)
  }

  /// Runs the flow's steps in order with retries. Events are gathered and recorded in as few
  /// commits as possible, but an attempt's start is always durable before its calls go out.
  func steps(of flow: Flow, claim: Claim, parameters: ValidatedParameters, run: ActiveRun) async -> StepsResult {
    let lease = claim.token
    var results: [String: [UInt8]] = [:]
    var allCached = true
    var pending: [RunEvent.OneOf_Kind] = [.started(.init())]
    do {
      for step in flow.steps {
        var attempt: UInt32 = 1
        while true {
          // Stopped (cancelled, lease lost, run timed out) while recording: start nothing more.
          if run.stop != nil || Task.isCancelled { return StepsResult(outcome: nil, pending: pending) }
          let context = StepContext(
            runID: claim.run.id, deployment: claim.run.deployment, step: step.name, attempt: attempt,
            parameters: parameters, results: results, dependencies: dependencies, timeout: step.timeout)
          let digest = Array(SHA256.hash(data: try step.input(context)))
          pending.append(Events.attemptStarted(step.name, attempt, digest: digest))
          let cacheKey = "\(claim.run.deployment)/\(step.name)/\(digest.hexString)"
          if step.cacheResults, let cached = cache.withLock({ $0[cacheKey] }) {
            pending.append(Events.attemptSucceeded(step.name, attempt, result: cached, duration: .zero, cached: true))
            results[step.name] = cached
            break
          }
          try await queue.report(lease, pending)
          pending = []
          let start = clock.now()
          var (result, timedOut) = await run.attempt(timeout: step.timeout, timers: timers) {
            await Self.call(step, context)
          }
          let duration = clock.now() - start
          if timedOut, case .failure = result {
            result = .failure(RPCError(code: .deadlineExceeded, message: "the step timed out after \(step.timeout)"))
          }
          if run.stop != nil || Task.isCancelled {
            // Cancelled by a user: the interrupted attempt is part of the history. After a lost
            // lease nothing more is recorded: the run is no longer ours.
            if run.stop == .cancelled {
              let cancelled = RPCError(code: .cancelled, message: "the run was cancelled during the attempt")
              pending.append(Events.attemptFailed(step.name, attempt, cancelled, retryable: false, duration: duration))
            }
            return StepsResult(outcome: nil, pending: pending)
          }
          switch result {
          case .success(let output):
            pending.append(
              Events.attemptSucceeded(step.name, attempt, result: output, duration: duration, cached: false))
            if step.cacheResults { cache.withLock { $0[cacheKey] = output } }
            results[step.name] = output
            allCached = false
          case .failure(let error):
            let retryable = step.retry.retryableCodes.contains(error.code) && Int(attempt) < step.retry.maxAttempts
            pending.append(Events.attemptFailed(step.name, attempt, error, retryable: retryable, duration: duration))
            if retryable {
              let backoff = step.retry.backoff(after: Int(attempt), random: random())
              pending.append(
                .retryScheduled(
                  .with {
                    $0.step = step.name
                    $0.nextAttempt = attempt + 1
                    $0.retryAtMicros = (clock.now() + backoff).micros
                  }))
              try await queue.report(lease, pending)
              pending = []
              // A stop cuts the backoff short; the loop's first check then ends the run.
              _ = await run.attempt(timeout: nil, timers: timers) { [clock] in try? await clock.sleep(for: backoff) }
              attempt += 1
              continue
            }
            let reason =
              "step \(step.name) failed after \(attempt) attempt\(attempt == 1 ? "" : "s"): \(error.code.canonicalName): \(error.message)"
            return StepsResult(
              outcome: error.code == .deadlineExceeded ? .timedOut(reason) : .failed(reason), pending: pending)
          }
          break
        }
      }
    } catch is CancellationError {
      return StepsResult(outcome: nil, pending: pending)
    } catch let error as QueueError where error.code == .leaseLost {
      return StepsResult(outcome: .stopped(.leaseLost), pending: [])
    } catch let error as QueueError where error.code == .illegalTransition {
      // A cancel request can land between two steps: the next step may not start any more.
      if let reply = try? await queue.heartbeat(lease), reply.cancelRequested {
        return StepsResult(outcome: .stopped(.cancelled), pending: [])
      }
      return StepsResult(outcome: .failed("the scheduler could not record the run: \(error.message)"), pending: [])
    } catch {
      if Task.isCancelled { return StepsResult(outcome: nil, pending: pending) }
      return StepsResult(outcome: .failed("the scheduler could not record the run: \(error)"), pending: [])
    }
    guard let last = flow.steps.last, let result = results[last.name] else {
      return StepsResult(outcome: .failed("the flow has no result"), pending: pending)
    }
    return StepsResult(outcome: .completed(result: result, type: last.resultType, cached: allCached), pending: pending)
  }

  /// One call of a step's body; every error becomes a gRPC status.
  static func call(_ step: Step, _ context: StepContext) async -> Result<[UInt8], RPCError> {
    do {
      return .success(try await step.body(context))
    } catch let error as RPCError {
      return .failure(error)
    } catch is CancellationError {
      return .failure(RPCError(code: .cancelled, message: "cancelled"))
    } catch {
      return .failure(RPCError(code: .unknown, message: "\(error)"))
    }
  }
}
