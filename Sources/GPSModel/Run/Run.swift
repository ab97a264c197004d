/// One event of the log with the types used throughout GPS (generated from `protos/gps/v1/events.proto`).
public typealias RunEvent = Gps_V1_Event

/// A typed parameter of a run: the protobuf message its JSON was validated into.
public struct RunParameter: Sendable, Hashable {
  public var name: String
  /// Full protobuf message name, e.g. `gps.v1.DataInfo`.
  public var type: String
  public var value: [UInt8]

  public init(name: String, type: String, value: [UInt8]) {
    self.name = name
    self.type = type
    self.value = value
  }
}

/// What happens when a run's scheduler disappears.
public struct CrashPolicy: Sendable, Hashable {
  /// How many times the run is re-queued before it is left Crashed (0: never).
  public var maxRequeues: UInt32
  /// How long after the crash the re-queued run becomes ready.
  public var requeueDelay: Duration

  public init(maxRequeues: UInt32 = 0, requeueDelay: Duration = .zero) {
    self.maxRequeues = maxRequeues
    self.requeueDelay = requeueDelay
  }
}

/// The lease under which one scheduler executes a run.
public struct Lease: Sendable, Hashable {
  public var scheduler: String
  /// The sequence of the claim event: unique, so a report under an older lease is recognised.
  public var token: UInt64
  /// When the lease runs out unless renewed (renewals are not logged; see ``RunQueue/heartbeat(_:)``).
  public var expiresAt: Timestamp
  /// The id of the scheduler's claim request that took it (empty: none given); a claim sent again
  /// after its answer was lost is answered with the runs held under it.
  public var claim: String

  public init(scheduler: String, token: UInt64, expiresAt: Timestamp, claim: String = "") {
    self.scheduler = scheduler
    self.token = token
    self.expiresAt = expiresAt
    self.claim = claim
  }
}

/// What was enqueued: fixed for the run's whole life, so copies of a ``Run`` share it.
public final class RunSpec: Sendable, Hashable {
  /// `flow/deployment`.
  public let deployment: String
  public let flow: String
  public let parametersJSON: String
  public let parameters: [RunParameter]
  public let idempotencyKey: String
  public let tags: [String]
  public let priority: Int32
  public let crashPolicy: CrashPolicy
  public let enqueuedBy: String
  public let enqueuedAt: Timestamp
  /// Limit on the run's execution (zero: none).
  public let timeout: Duration
  /// The version of the deployment the parameters were validated against (0: unversioned).
  public let deploymentVersion: UInt32

  package init(
    deployment: String, flow: String, parametersJSON: String, parameters: [RunParameter], idempotencyKey: String,
    tags: [String], priority: Int32, crashPolicy: CrashPolicy, enqueuedBy: String, enqueuedAt: Timestamp,
    timeout: Duration, deploymentVersion: UInt32
  ) {
    self.deployment = deployment
    self.flow = flow
    self.parametersJSON = parametersJSON
    self.parameters = parameters
    self.idempotencyKey = idempotencyKey
    self.tags = tags
    self.priority = priority
    self.crashPolicy = crashPolicy
    self.enqueuedBy = enqueuedBy
    self.enqueuedAt = enqueuedAt
    self.timeout = timeout
    self.deploymentVersion = deploymentVersion
  }

  public static func == (lhs: RunSpec, rhs: RunSpec) -> Bool {
    lhs === rhs
      || (lhs.deployment == rhs.deployment && lhs.flow == rhs.flow && lhs.parametersJSON == rhs.parametersJSON
        && lhs.parameters == rhs.parameters && lhs.idempotencyKey == rhs.idempotencyKey && lhs.tags == rhs.tags
        && lhs.priority == rhs.priority && lhs.crashPolicy == rhs.crashPolicy && lhs.enqueuedBy == rhs.enqueuedBy
        && lhs.enqueuedAt == rhs.enqueuedAt && lhs.timeout == rhs.timeout
        && lhs.deploymentVersion == rhs.deploymentVersion)
  }

  public func hash(into hasher: inout Hasher) {
    hasher.combine(deployment)
    hasher.combine(idempotencyKey)
    hasher.combine(enqueuedAt)
  }
}

/// Everything the queue knows about one run: the fold of its events.
public struct Run: Sendable, Hashable {
  public let id: RunID
  /// What was enqueued.
  public let spec: RunSpec

  // Where it is.
  public var state: RunState
  public var stateSince: Timestamp
  /// Why it is in its state (a failure reason, who cancelled it …), or empty.
  public var stateMessage: String
  /// When it may start (for Scheduled, Late and an unclaimed AwaitingRetry).
  public var scheduledStart: Timestamp
  public var lease: Lease?
  /// The lease expired and the event that resolves that (crashed, re-queued or cancelled) is next.
  public var orphaned: Bool
  /// When the current execution started (Running), or nil.
  public var startedAt: Timestamp?

  // Steps.
  public var step: String
  public var stepAttempt: UInt32
  /// That attempt started and has not ended (succeeded or failed) yet.
  public var attemptOpen: Bool
  /// Step attempts over the run's whole life.
  public var attempts: UInt32

  // Counters.
  public var eventCount: UInt32
  public var claims: UInt32
  public var requeues: UInt32
  public var userRetries: UInt32
  public var firstSequence: UInt64
  public var lastSequence: UInt64

  // Outcome.
  public var result: [UInt8]
  public var resultType: String

  public var deployment: String { spec.deployment }
  public var flow: String { spec.flow }
  public var parametersJSON: String { spec.parametersJSON }
  public var parameters: [RunParameter] { spec.parameters }
  public var idempotencyKey: String { spec.idempotencyKey }
  public var tags: [String] { spec.tags }
  public var priority: Int32 { spec.priority }
  public var crashPolicy: CrashPolicy { spec.crashPolicy }
  public var enqueuedBy: String { spec.enqueuedBy }
  public var enqueuedAt: Timestamp { spec.enqueuedAt }
  public var timeout: Duration { spec.timeout }
  public var deploymentVersion: UInt32 { spec.deploymentVersion }

  /// A run is ready to claim when it has no lease, waits in the queue and its start time has come.
  public var isClaimable: Bool {
    lease == nil && !orphaned && (state == .scheduled || state == .late || state == .awaitingRetry)
  }

  /// Holds a concurrency slot of its deployment and its tags: exactly while it is leased.
  public var holdsSlot: Bool { lease != nil }

  /// Every field, as the run index and snapshots store them.
  package init(
    id: RunID, spec: RunSpec, state: RunState, stateSince: Timestamp, stateMessage: String, scheduledStart: Timestamp,
    lease: Lease?, orphaned: Bool, startedAt: Timestamp?, step: String, stepAttempt: UInt32, attemptOpen: Bool,
    attempts: UInt32, eventCount: UInt32, claims: UInt32, requeues: UInt32, userRetries: UInt32,
    firstSequence: UInt64, lastSequence: UInt64, result: [UInt8], resultType: String
  ) {
    self.id = id
    self.spec = spec
    self.state = state
    self.stateSince = stateSince
    self.stateMessage = stateMessage
    self.scheduledStart = scheduledStart
    self.lease = lease
    self.orphaned = orphaned
    self.startedAt = startedAt
    self.step = step
    self.stepAttempt = stepAttempt
    self.attemptOpen = attemptOpen
    self.attempts = attempts
    self.eventCount = eventCount
    self.claims = claims
    self.requeues = requeues
    self.userRetries = userRetries
    self.firstSequence = firstSequence
    self.lastSequence = lastSequence
    self.result = result
    self.resultType = resultType
  }

  /// The run created by its `RunEnqueued` event.
  /// A run as its ``RunEvent/OneOf_Kind/enqueued(_:)`` event at `sequence` creates it.
  public init(id: RunID, enqueued event: Gps_V1_RunEnqueued, time: Timestamp, sequence: UInt64) {
    self.id = id
    spec = RunSpec(
      deployment: event.deployment, flow: event.flow, parametersJSON: event.parametersJson,
      parameters: event.parameters.map { RunParameter(name: $0.name, type: $0.type, value: Array($0.value)) },
      idempotencyKey: event.idempotencyKey, tags: event.tags, priority: event.priority,
      crashPolicy: CrashPolicy(
        maxRequeues: event.crashPolicy.maxRequeues, requeueDelay: .microseconds(event.crashPolicy.requeueDelayMicros)),
      enqueuedBy: event.enqueuedBy, enqueuedAt: time, timeout: .microseconds(event.timeoutMicros),
      deploymentVersion: event.deploymentVersion)
    state = .scheduled
    stateSince = time
    stateMessage = ""
    scheduledStart = Timestamp(micros: event.scheduledStartMicros)
    lease = nil
    orphaned = false
    startedAt = nil
    step = ""
    stepAttempt = 0
    attemptOpen = false
    attempts = 0
    eventCount = 1
    claims = 0
    requeues = 0
    userRetries = 0
    firstSequence = sequence
    lastSequence = sequence
    result = []
    resultType = ""
  }
}

extension Run {
  /// Whether the run is where a scheduler's report ending with `last` leaves it (for an end: in
  /// that end). Only the lease holder reports step events, one report at a time, and each report
  /// moves the run on (a new attempt, an attempt's end, an awaited retry, an end), so a run held
  /// under the same lease that is already there had that report applied: it was sent again after
  /// its answer was lost (a failover, a dropped connection).
  public func reflects(report last: RunEvent.OneOf_Kind) -> Bool {
    switch last {
    case .started:
      return [.running, .cancelling].contains(state) && step.isEmpty && stepAttempt == 0
    case .attemptStarted(let attempt):
      return step == attempt.step && stepAttempt == attempt.attempt && attemptOpen
    case .attemptSucceeded(let outcome):
      return [.running, .retrying, .cancelling].contains(state) && step == outcome.step
        && stepAttempt == outcome.attempt && !attemptOpen
    case .attemptFailed(let outcome):
      return [.running, .retrying, .cancelling].contains(state) && step == outcome.step
        && stepAttempt == outcome.attempt && !attemptOpen
    case .retryScheduled(let retry):
      return state == .awaitingRetry && step == retry.step && UInt64(stepAttempt) + 1 == UInt64(retry.nextAttempt)
    case .completed(let completed): return state == (completed.cached ? .cached : .completed)
    case .failed: return state == .failed
    case .timedOut: return state == .timedOut
    case .cancelled: return state == .cancelled
    case .crashed: return state == .crashed
    default: return false
    }
  }
}
