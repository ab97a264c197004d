import Foundation
package import GPSModel
import SwiftProtobuf
import Synchronization

/// Set by an enqueue's plan (run under the queue's lock) when it creates the run.
final class CreatedFlag {
  var value = false
}

/// What one ``RunQueue/tick()`` did.
package struct TickReport: Sendable, Hashable {
  package var markedLate: [RunID] = []
  package var leasesExpired: [RunID] = []
}

extension RunQueue {
  /// Creates a run (Scheduled), or returns the run that already has the request's idempotency key.
  package func enqueue(_ request: EnqueueRequest) async throws -> EnqueueResult {
    let created = CreatedFlag()
    let run = try await commit(Self.enqueuePlan(request, created: created, options: options)).runs.last!
    return EnqueueResult(run: run, created: created.value)
  }

  /// Like ``enqueue(_:)``, but returns once the run is applied and its event submitted to the log,
  /// without waiting for durability: acknowledge it to anyone only after
  /// ``waitUntilDurable(_:)`` for the run's `lastSequence` (and a check of ``durableSequence``).
  /// Lets a stream of enqueues from one client share group commits.
  package func submitEnqueue(_ request: EnqueueRequest) throws(QueueError) -> EnqueueResult {
    let created = CreatedFlag()
    let run = try submit(Self.enqueuePlan(request, created: created, options: options)) { _ in }.runs.last!
    return EnqueueResult(run: run, created: created.value)
  }

  static func enqueuePlan(
    _ request: EnqueueRequest, created: CreatedFlag, options: QueueOptions
  ) throws(QueueError) -> (inout Locked, Timestamp) throws(QueueError) -> Plan {
    guard !request.deployment.isEmpty, !request.flow.isEmpty else {
      throw QueueError(code: .invalidArgument, message: "a run needs a deployment and a flow")
    }
    try EventLimits.check(request)
    let size = request.parametersJSON.utf8.count
    guard size <= options.maxParameterBytes else {
      throw QueueError(
        code: .tooLarge,
        message:
          "the run's parameters are \(size) bytes of JSON, more than the limit of \(options.maxParameterBytes) bytes; nothing was enqueued"
      )
    }
    return { locked, time throws(QueueError) in
      if let id = request.id, locked.state.runs[id] == nil, let existing = try locked.state.run(id) {
        throw QueueError(
          code: .illegalTransition,
          message: "run \(id): enqueued for a run that exists already (it is \(existing.state))")
      }
      var renewed = false
      if !request.idempotencyKey.isEmpty, let run = try locked.state.run(idempotencyKey: request.idempotencyKey),
        let window = options.idempotencyWindow, run.enqueuedAt + window <= time
      {
        renewed = true
      } else if !request.idempotencyKey.isEmpty,
        let run = try locked.state.run(idempotencyKey: request.idempotencyKey)
      {
        // The same key means the same request (as with Stripe): a different one is a mistake that
        // would otherwise silently return a run the caller did not ask for.
        guard run.deployment == request.deployment, run.parametersJSON == request.parametersJSON else {
          let what = run.deployment == request.deployment ? "other parameters" : "deployment \(run.deployment)"
          throw QueueError(
            code: .conflict,
            message:
              "idempotency key \"\(request.idempotencyKey.prefix(200))\" already belongs to run \(run.id), enqueued with \(what); use another key, or the same request to get that run"
          )
        }
        return .unchanged(run)
      }
      var event = Gps_V1_RunEnqueued()
      event.deployment = request.deployment
      event.flow = request.flow
      event.parametersJson = request.parametersJSON
      event.parameters = request.parameters.map { parameter in
        var typed = Gps_V1_TypedParameter()
        typed.name = parameter.name
        typed.type = parameter.type
        typed.value = Data(parameter.value)
        return typed
      }
      event.idempotencyKey = request.idempotencyKey
      event.idempotencyKeyRenewed = renewed
      event.tags = request.tags
      event.priority = request.priority
      event.scheduledStartMicros = (request.scheduledStart ?? time).micros
      event.crashPolicy.maxRequeues = request.crashPolicy.maxRequeues
      event.crashPolicy.requeueDelayMicros = request.crashPolicy.requeueDelay.micros
      event.enqueuedBy = request.enqueuedBy
      event.timeoutMicros = request.timeout.micros
      event.deploymentVersion = request.deploymentVersion
      created.value = true
      return .write(request.id ?? RunID(), [.enqueued(event)])
    }
  }

  /// Claims the next ready run whose deployment and tags have a free concurrency slot: Pending,
  /// under a lease of ``QueueOptions/leaseDuration``. Nil when no run is ready.
  package func claim(scheduler: String) async throws -> Claim? {
    try await claim(scheduler: scheduler, limit: 1).first
  }

  /// Claims up to `limit` ready runs in one commit, in claim order.
  package func claim(scheduler: String, limit: Int) async throws -> [Claim] {
    try await claim(scheduler: scheduler, limit: limit, maxParameterBytes: .max)
  }

  /// Like ``claim(scheduler:limit:)``; the runs after the first stop
  /// once their parameters reach `maxParameterBytes` together, so the answer that carries them
  /// stays within a message limit.
  ///
  /// `deployments`: only runs of these deployments (nil: of any); a claim that names them records
  /// the scheduler as a worker serving them (``workers(serving:)``), as seen by `principal`.
  ///
  /// `claimID` is recorded with each run claimed. `retried`: the same claim was sent before and
  /// its answer lost (a failover, a dropped connection); the runs it claimed that the scheduler
  /// still holds under it are answered again, as they are, and only when there are none are
  /// others claimed. Without this, those runs would wait out their lease and be re-queued.
  package func claim(
    scheduler: String, limit: Int, maxParameterBytes: Int, deployments: Set<String>? = nil, principal: String = "",
    claimID: String = "", retried: Bool = false
  ) async throws -> [Claim] {
    guard !scheduler.isEmpty else {
      throw QueueError(code: .invalidArgument, message: "a claim needs the scheduler's id")
    }
    try EventLimits.check(name: scheduler, "scheduler")
    try EventLimits.check(name: claimID, "claim_id", optional: true, maximumLength: 64)
    if retried, !claimID.isEmpty {
      let held = try locked.withLock { locked throws(QueueError) -> [Claim] in
        try locked.lifecycle.admit()
        if case .some(let leader) = locked.standbyOf { throw Self.standbyRefusal(leader: leader) }
        var held: [Claim] = []
        for (id, expiresAt) in locked.index.leaseDeadlines {
          guard var run = try locked.state.run(id), var lease = run.lease, lease.scheduler == scheduler,
            lease.claim == claimID
          else { continue }
          lease.expiresAt = expiresAt
          run.lease = lease
          held.append(Claim(run: run, lease: lease))
        }
        return held.sorted { $0.lease.token < $1.lease.token }
      }
      if !held.isEmpty { return held }
    }
    try EventLimits.check(limit, in: 0...10_000, "limit")
    for deployment in deployments ?? [] { try EventLimits.check(name: deployment, "deployments") }
    try EventLimits.check(text: principal, "principal")
    if let deployments { sawWorker(scheduler, serving: deployments, principal: principal) }
    let runs = try await commit { [options] locked, time throws(QueueError) in
      var runs: [(RunID, [RunEvent.OneOf_Kind])] = []
      var chosen: [RunID] = []
      var bytes = 0
      while runs.count < max(1, limit) {
        // Slots taken by this batch count too: claim them one at a time in the index.
        guard
          let run = locked.index.next(
            in: locked.state, now: time, limits: options.limits, deployments: deployments, pending: chosen)
        else { break }
        bytes += run.parametersJSON.utf8.count
        if !runs.isEmpty, bytes > maxParameterBytes {
          locked.index.putBack(run)
          break
        }
        var event = Gps_V1_RunClaimed()
        event.scheduler = scheduler
        event.principal = principal
        event.leaseExpiresMicros = (time + options.leaseDuration).micros
        event.claimID = claimID
        runs.append((run.id, [.claimed(event)]))
        chosen.append(run.id)
      }
      return .writeMany(runs)
    }.runs
    return runs.map { Claim(run: $0, lease: $0.lease!) }
  }

  /// Renews a lease for ``QueueOptions/leaseDuration`` from now. Renewals are kept in memory, not
  /// logged: after a restart every lease gets a full duration from the restart.
  package func heartbeat(_ lease: LeaseToken) throws(QueueError) -> HeartbeatReply {
    try locked.withLock { locked throws(QueueError) in
      // Only the leader's lease deadlines count: a standby's would be forgotten.
      if case .some(let leader) = locked.standbyOf { throw Self.standbyRefusal(leader: leader) }
      let run = try Self.leased(lease, in: locked.state)
      let expiresAt = clock.now() + options.leaseDuration
      locked.index.leaseDeadlines[run.id] = expiresAt
      return HeartbeatReply(expiresAt: expiresAt, cancelRequested: run.state == .cancelling)
    }
  }

  /// Records what the scheduler holding `lease` did: the run started, a step attempt started,
  /// succeeded or failed, a retry was scheduled, or the run ended (completed, failed, timed out,
  /// cancelled after a request, crashed). Refused with ``QueueError/Code-swift.struct/leaseLost`` when
  /// the lease is no longer the run's, and with `illegalTransition` when the event does not follow.
  @discardableResult
  package func report(_ lease: LeaseToken, _ event: RunEvent.OneOf_Kind) async throws -> Run {
    try await report(lease, [event])
  }

  /// Records several events of the scheduler at once, atomically and in order (one commit): e.g. a
  /// step's success with the next step's start.
  @discardableResult
  package func report(_ lease: LeaseToken, _ events: [RunEvent.OneOf_Kind]) async throws -> Run {
    for event in events {
      switch event {
      case .started, .attemptStarted, .attemptSucceeded, .attemptFailed, .retryScheduled, .completed, .failed,
        .timedOut, .cancelled, .crashed:
        continue
      default:
        throw QueueError(
          code: .invalidArgument, message: "a scheduler cannot report \(RunEvent.with { $0.kind = event }.typeName)")
      }
    }
    guard !events.isEmpty else {
      throw QueueError(code: .invalidArgument, message: "a report needs at least one event")
    }
    for event in events { try EventLimits.check(report: event) }
    return try await commit { locked, _ throws(QueueError) in
      let run = try Self.leased(lease, in: locked.state)
      // The same report again, from a scheduler that did not get the answer (a failover, a dropped
      // connection): the run is where it left it, so it was applied; answered, not applied twice.
      // (A report that ended the run leaves no lease to match: the scheduler asks for the run.)
      if run.reflects(report: events.last!) { return .unchanged(run) }
      return .write(lease.runID, events)
    }.runs.last!
  }

  /// Cancels a run: at once when no scheduler holds it, otherwise through Cancelling (its scheduler
  /// sees the request in its next heartbeat). Cancelling a run that is Cancelling changes nothing.
  @discardableResult
  package func cancel(_ id: RunID, by requester: String, reason: String = "") async throws -> Run {
    try EventLimits.check(text: requester, "requested_by")
    try EventLimits.check(text: reason, "reason")
    return try await commit { locked, _ throws(QueueError) in
      guard let run = try locked.state.run(id) else { throw Self.unknown(id) }
      if run.state == .cancelling { return .unchanged(run) }
      guard !run.state.isTerminal else {
        throw QueueError(
          code: .illegalTransition,
          message: "run \(id) is already \(run.state) (since \(run.stateSince)); there is nothing to cancel")
      }
      let why = reason.isEmpty ? "cancelled by \(requester)" : "cancelled by \(requester): \(reason)"
      if run.lease != nil {
        var request = Gps_V1_CancelRequested()
        request.requestedBy = requester
        request.reason = why
        return .write(id, [.cancelRequested(request)])
      }
      var cancelled = Gps_V1_RunCancelled()
      cancelled.reason = why
      return .write(id, [.cancelled(cancelled)])
    }.runs.last!
  }

  /// Runs a Failed, Crashed, TimedOut or Cancelled run again, under the same id: Scheduled now.
  @discardableResult
  package func retry(_ id: RunID, by requester: String) async throws -> Run {
    try EventLimits.check(text: requester, "requested_by")
    return try await commit { locked, time throws(QueueError) in
      guard try locked.state.run(id) != nil else { throw Self.unknown(id) }
      var retried = Gps_V1_RunRetried()
      retried.requestedBy = requester
      retried.scheduledStartMicros = time.micros
      return .write(id, [.retried(retried)])
    }.runs.last!
  }

  /// Does what the clock has made due: marks Scheduled runs Late, and expires leases that were not
  /// renewed, making each run Crashed, re-queued by its crash policy, or (when Cancelling) Cancelled.
  @discardableResult
  package func tick() async throws -> TickReport {
    let now = clock.now()
    let (late, expired) = locked.withLock { locked in
      (
        locked.index.dueLate(in: locked.state, now: now),
        locked.index.leaseDeadlines.filter { $0.value <= now }.map(\.key).sorted()
      )
    }
    var report = TickReport()
    for id in late {
      let marked = try await commit { locked, _ throws(QueueError) in
        guard let run = locked.state.runs[id], run.state == .scheduled, run.lease == nil else { return .unchanged(nil) }
        var event = Gps_V1_RunMarkedLate()
        event.scheduledStartMicros = run.scheduledStart.micros
        return .write(id, [.markedLate(event)])
      }
      if !marked.runs.isEmpty { report.markedLate.append(id) }
    }
    for id in expired {
      let expired = try await commit { locked, time throws(QueueError) in
        guard let run = locked.state.runs[id], let lease = run.lease,
          let deadline = locked.index.leaseDeadlines[id], deadline <= time
        else { return .unchanged(nil) }
        var expiry = Gps_V1_LeaseExpired()
        expiry.scheduler = lease.scheduler
        expiry.expiredAtMicros = deadline.micros
        if run.attemptOpen {
          expiry.lostStep = run.step
          expiry.lostAttempt = run.stepAttempt
        }
        let lost = "scheduler \(lease.scheduler) stopped heartbeating; its lease expired at \(deadline)"
        let resolution: RunEvent.OneOf_Kind
        if run.state == .cancelling {
          resolution = .cancelled(.with { $0.reason = "\(run.stateMessage) (\(lost))" })
        } else if run.requeues < run.crashPolicy.maxRequeues {
          resolution = .requeued(
            .with {
              $0.reason = "\(lost); re-queued (\(run.requeues + 1) of \(run.crashPolicy.maxRequeues))"
              $0.scheduledStartMicros = (time + run.crashPolicy.requeueDelay).micros
            })
        } else {
          resolution = .crashed(.with { $0.reason = lost })
        }
        return .write(id, [.leaseExpired(expiry), resolution])
      }
      if !expired.runs.isEmpty { report.leasesExpired.append(id) }
    }
    return report
  }

  // MARK: Helpers

  static func unknown(_ id: RunID) -> QueueError {
    QueueError(code: .notFound, message: "no run has the id \(id)")
  }

  static func leased(_ lease: LeaseToken, in state: QueueState) throws(QueueError) -> Run {
    guard let run = try state.run(lease.runID) else { throw unknown(lease.runID) }
    guard let current = run.lease, current.token == lease.token else {
      let holder =
        run.lease.map { "it is now held by \($0.scheduler)" } ?? "it is \(run.state) and held by no scheduler"
      throw QueueError(
        code: .leaseLost,
        message: "run \(run.id) is no longer held under lease \(lease.token) (\(holder)); stop working on it")
    }
    return run
  }
}
