import Foundation
import SwiftProtobuf

extension Gps_V1_RunInfo {
  /// The most bytes one answer of the control API carries: gRPC's default message limit is 4 MiB,
  /// which every client (grpcio's too) enforces on what it receives.
  public static let answerBudget = 3 << 20

  /// The run as the control API shows it. The typed parameters are left out (`parameters_json`
  /// holds the same values, and schedulers validate from it), and `parameters_json` is cut to
  /// `maxParameterBytes` (with `parameters_truncated_bytes` saying so) so that no answer outgrows
  /// the transport's limit, even for a run stored before parameters were limited.
  public init(_ run: Run, maxParameterBytes: Int = answerBudget) {
    self.init()
    id = run.id.description
    deployment = run.deployment
    flow = run.flow
    state = run.state.rawValue
    stateSinceMicros = run.stateSince.micros
    stateMessage = run.stateMessage
    if run.parametersJSON.utf8.count > maxParameterBytes {
      parametersJson = String(decoding: run.parametersJSON.utf8.prefix(maxParameterBytes), as: UTF8.self)
      parametersTruncatedBytes = UInt64(run.parametersJSON.utf8.count)
    } else {
      parametersJson = run.parametersJSON
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
    deploymentVersion = run.deploymentVersion
    crashPolicy = .with {
      $0.maxRequeues = run.crashPolicy.maxRequeues
      $0.requeueDelayMicros = run.crashPolicy.requeueDelay.micros
    }
  }

  /// About how many bytes the run takes in an answer (its variable-size fields plus room for the rest).
  package var answerSize: Int {
    parametersJson.utf8.count + result.count + stateMessage.utf8.count + idempotencyKey.utf8.count
      + tags.reduce(0) { $0 + $1.utf8.count + 2 } + 512
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
        $0.deploymentVersion = deploymentVersion
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
