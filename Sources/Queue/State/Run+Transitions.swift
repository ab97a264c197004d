import GPSModel

/// Why an event cannot apply to a run: the transition and the reason, in words.
struct TransitionError: Error {
  var message: String
}

extension Run {
  /// Applies one event of this run, or explains why the transition is illegal and changes nothing.
  /// Pure: the same function serves the live queue, replay and audit. Every case checks before it
  /// changes anything, so the run can be changed in place.
  @discardableResult
  mutating func apply(_ event: RunEvent, sequence: UInt64) throws(TransitionError) -> Transition {
    let time = event.time
    let name = event.typeName
    func refuse(_ why: String) -> TransitionError {
      TransitionError(message: "run \(id): \(name) is not allowed while the run is \(state): \(why)")
    }
    guard eventCount < .max, event.runEvent == eventCount + 1 else {
      throw TransitionError(
        message: "run \(id): event number \(event.runEvent) follows \(eventCount); run events are numbered without gaps"
      )
    }
    if orphaned {
      switch event.kind {
      case .crashed, .requeued, .cancelled: break
      default: throw refuse("its lease expired, so the next event must be RunCrashed, RunRequeued or RunCancelled")
      }
    }
    let previousState = state
    let heldSlot = holdsSlot
    /// The new state's message; set by events that carry a reason.
    var message: String?

    switch event.kind {
    case .enqueued:
      throw refuse("the run already exists (enqueued at sequence \(firstSequence))")

    case .markedLate:
      guard state == .scheduled, lease == nil else {
        throw refuse("only a Scheduled run waiting in the queue can be Late")
      }
      state = .late

    case .claimed(let claim):
      guard isClaimable else {
        throw refuse(
          lease != nil
            ? "it is already claimed by \(lease!.scheduler)"
            : "only a Scheduled, Late or re-queued AwaitingRetry run can be claimed")
      }
      guard scheduledStart <= time else {
        throw refuse("its scheduled start \(scheduledStart) has not come (claimed at \(time))")
      }
      state = .pending
      lease = Lease(
        scheduler: claim.scheduler, token: sequence, expiresAt: Timestamp(micros: claim.leaseExpiresMicros),
        claim: claim.claimID)
      claims = claims.incrementedSaturated

    case .leaseExpired:
      guard lease != nil else { throw refuse("the run holds no lease") }
      lease = nil
      orphaned = true

    case .started:
      guard state == .pending, lease != nil else { throw refuse("only a claimed Pending run can start") }
      state = .running
      startedAt = time
      step = ""
      stepAttempt = 0

    case .attemptStarted(let attempt):
      guard lease != nil else { throw refuse("the run holds no lease") }
      switch state {
      case .running, .retrying:
        if attempt.attempt == 1 {
          state = .running
        } else {
          guard attempt.step == step, attempt.attempt == stepAttempt.incrementedSaturated, stepAttempt < .max else {
            throw refuse(
              "attempt \(attempt.attempt) of step \(attempt.step) does not follow attempt \(stepAttempt) of step \(step)"
            )
          }
          state = .retrying
        }
      case .awaitingRetry:
        guard attempt.step == step, attempt.attempt == stepAttempt.incrementedSaturated, stepAttempt < .max else {
          throw refuse("the retry awaited is attempt \(UInt64(stepAttempt) + 1) of step \(step)")
        }
        state = .retrying
      default:
        throw refuse("a step attempt needs a Running run")
      }
      step = attempt.step
      stepAttempt = attempt.attempt
      attemptOpen = true
      attempts = attempts.incrementedSaturated

    case .attemptSucceeded(let outcome):
      guard lease != nil, [.running, .retrying, .cancelling].contains(state) else {
        throw refuse("no step attempt is running")
      }
      guard outcome.step == step, outcome.attempt == stepAttempt else {
        throw refuse("the attempt running is \(stepAttempt) of step \(step), not \(outcome.attempt) of \(outcome.step)")
      }
      guard attemptOpen else { throw refuse("attempt \(stepAttempt) of step \(step) has already ended") }
      attemptOpen = false

    case .attemptFailed(let outcome):
      guard lease != nil, [.running, .retrying, .cancelling].contains(state) else {
        throw refuse("no step attempt is running")
      }
      guard outcome.step == step, outcome.attempt == stepAttempt else {
        throw refuse("the attempt running is \(stepAttempt) of step \(step), not \(outcome.attempt) of \(outcome.step)")
      }
      guard attemptOpen else { throw refuse("attempt \(stepAttempt) of step \(step) has already ended") }
      attemptOpen = false

    case .retryScheduled(let retry):
      guard lease != nil, state == .running || state == .retrying else {
        throw refuse("only a Running or Retrying run can schedule a step retry")
      }
      guard retry.step == step, retry.nextAttempt == stepAttempt.incrementedSaturated, stepAttempt < .max else {
        throw refuse(
          "the next attempt of step \(step) is \(UInt64(stepAttempt) + 1), not \(retry.nextAttempt) of \(retry.step)")
      }
      state = .awaitingRetry
      scheduledStart = Timestamp(micros: retry.retryAtMicros)

    case .completed(let completed):
      guard lease != nil, [.running, .retrying, .cancelling].contains(state) else {
        throw refuse("only a Running run can complete")
      }
      state = completed.cached ? .cached : .completed
      result = Array(completed.result)
      resultType = completed.resultType
      lease = nil

    case .failed(let failed):
      guard lease != nil, Self.isExecuting(state) else {
        throw refuse("only a run that a scheduler holds can end as Failed")
      }
      state = .failed
      lease = nil
      message = failed.reason

    case .timedOut(let timedOut):
      guard lease != nil, Self.isExecuting(state) else {
        throw refuse("only a run that a scheduler holds can end as TimedOut")
      }
      state = .timedOut
      lease = nil
      message = timedOut.reason

    case .cancelRequested(let request):
      guard lease != nil, [.pending, .running, .retrying, .awaitingRetry].contains(state) else {
        throw refuse(
          state == .cancelling
            ? "cancellation was already requested"
            : "only a claimed run is cancelled through Cancelling; an unclaimed one is cancelled at once")
      }
      state = .cancelling
      message = request.reason

    case .cancelled(let cancelled):
      guard state == .cancelling || isClaimable else {
        throw refuse("a run executing must pass through Cancelling; a finished run cannot be cancelled")
      }
      // The user's reason (from the request) stays; the scheduler's words follow it.
      if state == .cancelling, !stateMessage.isEmpty, !cancelled.reason.hasPrefix(stateMessage) {
        message = cancelled.reason.isEmpty ? stateMessage : "\(stateMessage); \(cancelled.reason)"
      } else {
        message = cancelled.reason
      }
      state = .cancelled
      lease = nil
      orphaned = false

    case .crashed(let crashed):
      guard lease != nil || orphaned else { throw refuse("only a run that a scheduler holds (or held) can crash") }
      state = .crashed
      message = crashed.reason
      lease = nil
      orphaned = false

    case .requeued(let requeued):
      guard orphaned else { throw refuse("only a run whose lease expired is re-queued") }
      guard requeues < crashPolicy.maxRequeues else {
        throw refuse("its crash policy allows \(crashPolicy.maxRequeues) re-queues and \(requeues) were used")
      }
      state = .awaitingRetry
      message = requeued.reason
      scheduledStart = Timestamp(micros: requeued.scheduledStartMicros)
      orphaned = false
      requeues = requeues.incrementedSaturated
      step = ""
      stepAttempt = 0
      startedAt = nil

    case .retried(let retried):
      guard [.failed, .crashed, .timedOut, .cancelled].contains(state) else {
        throw refuse("only a Failed, Crashed, TimedOut or Cancelled run can be retried")
      }
      state = .scheduled
      message = "retried by \(retried.requestedBy)"
      scheduledStart = Timestamp(micros: retried.scheduledStartMicros)
      userRetries = userRetries.incrementedSaturated
      step = ""
      stepAttempt = 0
      startedAt = nil
      result = []
      resultType = ""

    case .logTailTruncated, .logLossAccepted, .logSegmentsArchived, .logEventSkipped, .deploymentRegistered,
      .deploymentHandedOver:
      throw TransitionError(message: "run \(id): \(event.typeName) is a record of the queue, not an event of a run")

    case nil:
      throw TransitionError(message: "run \(id): an event of an unknown type (written by a newer GPS?)")
    }
    // An attempt is open only while the run executes; whatever ended the execution ended it.
    if ![.running, .retrying, .cancelling].contains(state) { attemptOpen = false }
    eventCount += 1  // below .max: checked on entry
    lastSequence = sequence
    if state != previousState {
      stateSince = time
      stateMessage = message ?? ""
    }
    return Transition(from: previousState, to: state, heldSlot: heldSlot, holdsSlot: holdsSlot)
  }

  /// What an event changed, for the tables derived from the runs.
  struct Transition {
    var from: RunState
    var to: RunState
    var heldSlot: Bool
    var holdsSlot: Bool
  }

  /// Whether a run in `state` can be held by a scheduler.
  static func isExecuting(_ state: RunState) -> Bool {
    switch state {
    case .pending, .running, .retrying, .awaitingRetry, .cancelling: true
    default: false
    }
  }
}
