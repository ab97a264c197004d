package import GPSModel

/// The ranges every value from outside must lie in before it becomes an event: checked where a
/// request becomes events (``RunQueue``'s commands), the one place the gRPC API, the HTTP API and
/// the offline CLI all pass. The reducer itself is total (it never traps on what the log holds);
/// these limits keep values that no one could mean out of the log in the first place.
package enum EventLimits {
  /// Times: what RFC 3339 can write, years 0000 to 9999 with any offset (±23:59), as Foundation
  /// reads them (its calendar puts 0000-01-01 two days before the proleptic Gregorian one).
  package static let earliestTime = Timestamp(micros: -62_167_478_400_000_000)
  package static let latestTime = Timestamp(micros: 253_402_387_199_999_999)
  /// Durations (timeouts, delays, backoffs, how long an attempt took): up to 100 years.
  package static let longestDuration = Duration.seconds(100 * 365 * 86_400)
  /// Names (deployments, flows, steps, parameters, tags, schedulers, workers, types), in Unicode
  /// code points (as JSON Schema's `maxLength` counts).
  package static let maximumNameLength = 256
  package static let maximumIdempotencyKeyLength = 1024
  package static let maximumTags = 64
  /// Reasons and messages (a step's error, why a run failed or was cancelled).
  package static let maximumMessageBytes = 64 << 10
  package static let maximumRequeues: UInt32 = 10_000
  package static let maximumAttempts: UInt32 = 10_000
  package static let maximumSteps = 1_000
  package static let maximumParameters = 1_000
  /// A step's result, or a run's.
  package static let maximumResultBytes = 16 << 20

  static func refuse(_ message: String) -> QueueError {
    QueueError(code: .invalidArgument, message: message + "; nothing was written")
  }

  /// Checks that `time`, given as `field`, lies between ``earliestTime`` and ``latestTime``.
  package static func check(time: Timestamp, _ field: String) throws(QueueError) {
    guard time >= earliestTime, time <= latestTime else {
      throw refuse(
        "\(field): \(time.micros) µs since 1970 is out of range; a time lies in the years 0000 to 9999 (RFC 3339), \(earliestTime.micros) to \(latestTime.micros) µs"
      )
    }
  }

  /// Checks that `micros`, a duration given as `field`, lies between 0 and ``longestDuration``.
  package static func check(durationMicros micros: Int64, _ field: String) throws(QueueError) {
    guard micros >= 0, micros <= longestDuration.micros else {
      throw refuse(
        "\(field): \(micros) µs is out of range; a duration lies between 0 and \(longestDuration.micros) µs (100 years)"
      )
    }
  }

  /// Checks a count or number given as `field` against `range`.
  package static func check<T: BinaryInteger>(_ value: T, in range: ClosedRange<T>, _ field: String) throws(QueueError)
  {
    guard range.contains(value) else {
      throw refuse("\(field): \(value) is out of range; it lies between \(range.lowerBound) and \(range.upperBound)")
    }
  }

  /// Checks a finite floating-point `value` in `range`.
  package static func check(_ value: Double, in range: ClosedRange<Double>, _ field: String) throws(QueueError) {
    guard value.isFinite, range.contains(value) else {
      throw refuse("\(field): \(value) is out of range; it lies between \(range.lowerBound) and \(range.upperBound)")
    }
  }

  /// Checks a name: not empty unless `optional`, at most `maximumLength`, and without control
  /// characters or the invisible marks that reorder text (U+202A–U+202E, U+2066–U+2069), which would
  /// let a name forge a log line or disguise itself on a page.
  package static func check(
    name: String, _ field: String, optional: Bool = false, maximumLength: Int = maximumNameLength
  ) throws(QueueError) {
    guard optional || !name.isEmpty else { throw refuse("\(field): required") }
    let length = name.unicodeScalars.count
    guard length <= maximumLength else {
      throw refuse("\(field): \(length) characters, more than the limit of \(maximumLength)")
    }
    if let bad = name.unicodeScalars.first(where: isForbiddenInNames) {
      throw refuse(
        "\(field): contains U+\(String(bad.value, radix: 16, uppercase: true).leftPadded(to: 4)) (a control or text-direction character), which names may not hold"
      )
    }
  }

  /// Checks a free text (a reason, a message): at most ``maximumMessageBytes``.
  package static func check(text: String, _ field: String) throws(QueueError) {
    guard text.utf8.count <= maximumMessageBytes else {
      throw refuse("\(field): \(text.utf8.count) bytes, more than the limit of \(maximumMessageBytes)")
    }
  }

  static func isForbiddenInNames(_ scalar: Unicode.Scalar) -> Bool {
    switch scalar.value {
    case 0x00...0x1F, 0x7F...0x9F, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069, 0x2028, 0x2029, 0xFEFF: true
    default: false
    }
  }

  /// Checks every value of an enqueue.
  package static func check(_ request: EnqueueRequest) throws(QueueError) {
    try check(name: request.deployment, "deployment")
    try check(name: request.flow, "flow")
    try check(
      name: request.idempotencyKey, "idempotency_key", optional: true, maximumLength: maximumIdempotencyKeyLength)
    guard request.tags.count <= maximumTags else {
      throw refuse("tags: \(request.tags.count) tags, more than the limit of \(maximumTags)")
    }
    for tag in request.tags { try check(name: tag, "tags") }
    if let start = request.scheduledStart { try check(time: start, "scheduled_start") }
    try check(request.crashPolicy.maxRequeues, in: 0...maximumRequeues, "crash_policy.max_requeues")
    try check(durationMicros: request.crashPolicy.requeueDelay.micros, "crash_policy.requeue_delay")
    try check(durationMicros: request.timeout.micros, "timeout")
    try check(text: request.enqueuedBy, "enqueued_by")
    for parameter in request.parameters {
      try check(name: parameter.name, "parameters")
      try check(name: parameter.type, "parameters.\(parameter.name).type")
    }
  }

  /// Checks every value of an event a scheduler reports.
  package static func check(report event: RunEvent.OneOf_Kind) throws(QueueError) {
    switch event {
    case .attemptStarted(let attempt):
      try check(name: attempt.step, "step", optional: true)
      try check(attempt.attempt, in: 0...maximumAttempts, "attempt")
      try check(attempt.inputDigest.count, in: 0...64, "input_digest (bytes)")
    case .attemptSucceeded(let outcome):
      try check(name: outcome.step, "step", optional: true)
      try check(outcome.attempt, in: 0...maximumAttempts, "attempt")
      try check(durationMicros: outcome.durationMicros, "duration")
      try check(outcome.result.count, in: 0...maximumResultBytes, "result (bytes)")
    case .attemptFailed(let outcome):
      try check(name: outcome.step, "step", optional: true)
      try check(outcome.attempt, in: 0...maximumAttempts, "attempt")
      try check(outcome.statusCode, in: 0...16, "status_code")
      try check(name: outcome.statusName, "status_name", optional: true)
      try check(text: outcome.message, "message")
      try check(durationMicros: outcome.durationMicros, "duration")
    case .retryScheduled(let retry):
      try check(name: retry.step, "step", optional: true)
      try check(retry.nextAttempt, in: 0...maximumAttempts, "next_attempt")
      try check(time: Timestamp(micros: retry.retryAtMicros), "retry_at")
    case .completed(let completed):
      try check(completed.result.count, in: 0...maximumResultBytes, "result (bytes)")
      try check(name: completed.resultType, "result_type", optional: true)
    case .failed(let failed): try check(text: failed.reason, "reason")
    case .timedOut(let timedOut): try check(text: timedOut.reason, "reason")
    case .cancelled(let cancelled): try check(text: cancelled.reason, "reason")
    case .crashed(let crashed): try check(text: crashed.reason, "reason")
    default: break
    }
  }

  /// Checks every value of a deployment's definition.
  package static func check(_ definition: DeploymentDefinition) throws(QueueError) {
    let name = definition.name
    try check(name: name, "deployment")
    try check(name: definition.flow, "deployment \(name): flow")
    try check(text: definition.description_p, "deployment \(name): description")
    try check(name: definition.resultType, "deployment \(name): result_type", optional: true)
    guard definition.tags.count <= maximumTags else {
      throw refuse("deployment \(name): tags: \(definition.tags.count) tags, more than the limit of \(maximumTags)")
    }
    for tag in definition.tags { try check(name: tag, "deployment \(name): tags") }
    try check(durationMicros: definition.timeoutMicros, "deployment \(name): timeout")
    try check(
      definition.crashPolicy.maxRequeues, in: 0...maximumRequeues, "deployment \(name): crash_policy.max_requeues")
    try check(
      durationMicros: definition.crashPolicy.requeueDelayMicros, "deployment \(name): crash_policy.requeue_delay")
    try check(definition.steps.count, in: 1...maximumSteps, "deployment \(name): steps (how many)")
    var stepNames = Set<String>()
    for step in definition.steps {
      let field = "deployment \(name): step \(step.name.prefix(100))"
      try check(name: step.name, "deployment \(name): steps.name")
      guard stepNames.insert(step.name).inserted else { throw refuse("\(field): two steps have this name") }
      try check(step.maxAttempts, in: 0...maximumAttempts, "\(field): max_attempts")
      try check(durationMicros: step.initialBackoffMicros, "\(field): initial_backoff")
      try check(durationMicros: step.maxBackoffMicros, "\(field): max_backoff")
      try check(durationMicros: step.timeoutMicros, "\(field): timeout")
      try check(step.backoffMultiplier, in: 0...1_000, "\(field): backoff_multiplier")
      try check(step.jitter, in: 0...1, "\(field): jitter")
      for code in step.retryableCodes { try check(code, in: 0...16, "\(field): retryable_codes") }
      try check(name: step.resultType, "\(field): result_type", optional: true)
    }
    try check(definition.parameters.count, in: 0...maximumParameters, "deployment \(name): parameters (how many)")
    var parameterNames = Set<String>()
    for parameter in definition.parameters {
      try check(name: parameter.name, "deployment \(name): parameters.name")
      guard parameterNames.insert(parameter.name).inserted else {
        throw refuse("deployment \(name): parameter \(parameter.name): two parameters have this name")
      }
      try check(name: parameter.type, "deployment \(name): parameter \(parameter.name): type")
      try check(text: parameter.description_p, "deployment \(name): parameter \(parameter.name): description")
    }
  }
}

extension String {
  func leftPadded(to width: Int) -> String {
    count >= width ? self : String(repeating: "0", count: width - count) + self
  }
}
