public import Foundation
public import Queue
import SwiftProtobuf

extension Gps_V1_RunInfo {
  /// The run as the control API shows it.
  public init(_ run: Run) {
    self.init()
    id = run.id.description
    deployment = run.deployment
    flow = run.flow
    state = run.state.rawValue
    stateSinceMicros = run.stateSince.micros
    stateMessage = run.stateMessage
    parametersJson = run.parametersJSON
    parameters = run.parameters.map { parameter in
      .with {
        $0.name = parameter.name
        $0.type = parameter.type
        $0.value = Data(parameter.value)
      }
    }
    idempotencyKey = run.idempotencyKey
    tags = run.tags
    priority = run.priority
    scheduledStartMicros = run.scheduledStart.micros
    enqueuedBy = run.enqueuedBy
    enqueuedAtMicros = run.enqueuedAt.micros
    startedAtMicros = run.startedAt?.micros ?? 0
    step = run.step
    stepAttempt = run.stepAttempt
    attempts = run.attempts
    eventCount = run.eventCount
    claims = run.claims
    requeues = run.requeues
    userRetries = run.userRetries
    firstSequence = run.firstSequence
    lastSequence = run.lastSequence
    result = Data(run.result)
    resultType = run.resultType
    leaseScheduler = run.lease?.scheduler ?? ""
    leaseExpiresMicros = run.lease?.expiresAt.micros ?? 0
    timeoutMicros = run.timeout.micros
    crashPolicy = .with {
      $0.maxRequeues = run.crashPolicy.maxRequeues
      $0.requeueDelayMicros = run.crashPolicy.requeueDelay.micros
    }
  }

  /// The run this describes (for a remote scheduler's claims).
  public var run: Run? {
    guard let id = RunID(id), let state = RunState(name: state) else { return nil }
    var run = Run(
      id: id,
      enqueued: .with {
        $0.deployment = deployment
        $0.flow = flow
        $0.parametersJson = parametersJson
        $0.parameters = parameters
        $0.idempotencyKey = idempotencyKey
        $0.tags = tags
        $0.priority = priority
        $0.scheduledStartMicros = scheduledStartMicros
        $0.crashPolicy = crashPolicy
        $0.enqueuedBy = enqueuedBy
        $0.timeoutMicros = timeoutMicros
      },
      time: Timestamp(micros: enqueuedAtMicros), sequence: firstSequence)
    run.state = state
    run.stateSince = Timestamp(micros: stateSinceMicros)
    run.stateMessage = stateMessage
    run.startedAt = startedAtMicros == 0 ? nil : Timestamp(micros: startedAtMicros)
    run.step = step
    run.stepAttempt = stepAttempt
    run.attempts = attempts
    run.eventCount = eventCount
    run.claims = claims
    run.requeues = requeues
    run.userRetries = userRetries
    run.lastSequence = lastSequence
    run.result = Array(result)
    run.resultType = resultType
    if !leaseScheduler.isEmpty {
      run.lease = Lease(scheduler: leaseScheduler, token: 0, expiresAt: Timestamp(micros: leaseExpiresMicros))
    }
    return run
  }
}
