package import Flows
package import Foundation
package import GPSModel
package import Queue
import RPC
import SwiftProtobuf

/// How events and runs are shown: one line for tables and `--watch`, and JSON whose shape is
/// documented in docs/history.md (stable: other tools read `gps history replay --output jsonl`).
package enum EventText {
  /// `bytes` of message `type` as JSON, or nil if the type is unknown or the bytes do not decode.
  package static func json(of bytes: Data, type: String, types: ResultTypes) -> JSONValue? {
    guard !type.isEmpty else { return nil }
    return types.pool.json(of: [UInt8](bytes), type: type)
  }

  static let jsonOptions: JSONEncodingOptions = {
    var options = JSONEncodingOptions()
    options.preserveProtoFieldNames = true
    return options
  }()

  /// The event's own fields, e.g. `step=prepare attempt=1 code=UNAVAILABLE message="…"`.
  package static func details(_ event: RunEvent, types: ResultTypes = .none) -> String {
    func quoted(_ text: String) -> String { JSONValue.quoted(text, limit: 200) }
    func micros(_ value: Int64) -> String { Timestamp(micros: value).description }
    func duration(_ value: Int64) -> String { String(format: "%.1fms", Double(value) / 1000) }
    switch event.kind {
    case .enqueued(let e):
      var parts = ["deployment=\(e.deployment)", "parameters=\(e.parametersJson)"]
      if !e.idempotencyKey.isEmpty { parts.append("id_key=\(quoted(e.idempotencyKey))") }
      if !e.tags.isEmpty { parts.append("tags=\(e.tags.joined(separator: ","))") }
      if e.scheduledStartMicros != 0 { parts.append("start=\(micros(e.scheduledStartMicros))") }
      if !e.enqueuedBy.isEmpty { parts.append("by=\(e.enqueuedBy)") }
      return parts.joined(separator: " ")
    case .markedLate(let e): return "scheduled_start=\(micros(e.scheduledStartMicros))"
    case .claimed(let e):
      let principal = e.principal.isEmpty ? "" : " principal=\(e.principal)"
      return "scheduler=\(e.scheduler)\(principal) lease_until=\(micros(e.leaseExpiresMicros))"
    case .leaseExpired(let e):
      let lost = e.lostStep.isEmpty ? "" : " lost_attempt=\(e.lostStep)#\(e.lostAttempt)"
      return "scheduler=\(e.scheduler) expired_at=\(micros(e.expiredAtMicros))\(lost)"
    case .started: return ""
    case .attemptStarted(let e): return "step=\(e.step) attempt=\(e.attempt)"
    case .attemptSucceeded(let e):
      return "step=\(e.step) attempt=\(e.attempt) duration=\(duration(e.durationMicros))"
        + (e.cached ? " cached" : "") + " result_bytes=\(e.result.count)"
    case .attemptFailed(let e):
      return
        "step=\(e.step) attempt=\(e.attempt) code=\(e.statusName) message=\(quoted(e.message)) retryable=\(e.retryable) duration=\(duration(e.durationMicros))"
    case .retryScheduled(let e): return "step=\(e.step) next_attempt=\(e.nextAttempt) at=\(micros(e.retryAtMicros))"
    case .completed(let e):
      let result = json(of: e.result, type: e.resultType, types: types).map(\.text) ?? "\(e.result.count) bytes"
      return "result_type=\(e.resultType) result=\(result)" + (e.cached ? " cached" : "")
    case .failed(let e): return "reason=\(quoted(e.reason))"
    case .timedOut(let e): return "reason=\(quoted(e.reason))"
    case .cancelRequested(let e): return "by=\(e.requestedBy) reason=\(quoted(e.reason))"
    case .cancelled(let e): return "reason=\(quoted(e.reason))"
    case .crashed(let e): return "reason=\(quoted(e.reason))"
    case .requeued(let e): return "reason=\(quoted(e.reason)) start=\(micros(e.scheduledStartMicros))"
    case .retried(let e): return "by=\(e.requestedBy)"
    case .logTailTruncated(let e): return RecoveryReport(note: e).summary
    case .deploymentRegistered(let e):
      return
        "deployment=\(e.definition.name) version=\(e.version) worker=\(e.worker) by=\(e.registeredBy) steps=\(e.definition.steps.map(\.name).joined(separator: ","))"
    case .deploymentHandedOver(let e):
      let from = e.from.isEmpty ? "" : " from=\(e.from)"
      return "deployment=\(e.deployment)\(from) to=\(e.to) by=\(e.handedOverBy) note=\(quoted(e.note))"
    case .logEventSkipped(let e):
      let run = RunID(bytes: e.runID).map { " run=\($0)" } ?? ""
      return
        "skipped=\(e.sequence) type=\(e.eventType)\(run) by=\(e.skippedBy) reason=\(quoted(e.reason)) refusal=\(quoted(e.refusal))"
    case .logLossAccepted(let e):
      let setAside = e.setAside.isEmpty ? "" : " set_aside=\(e.setAside.joined(separator: ","))"
      return
        "missing=\(e.firstMissing)–\(e.lastMissing) by=\(e.acceptedBy) evidence=\(quoted(e.evidence))\(setAside)"
    case .logSegmentsArchived(let e):
      let action = e.deleted ? "deleted" : "moved to archive/"
      return
        "archived=\(e.firstArchived)–\(e.lastArchived) segments=\(e.segments.count) \(action) by=\(e.archivedBy) reason=\(quoted(e.reason)) last_hash=\(e.lastHash.prefix(8).map { String(format: "%02x", $0) }.joined())"
    case nil: return "(unknown event type)"
    }
  }

  /// The run's state right after `event`, or nil when the event does not change it.
  package static func stateAfter(_ event: RunEvent) -> RunState? {
    switch event.kind {
    case .enqueued: .scheduled
    case .requeued: .awaitingRetry
    case .markedLate: .late
    case .claimed: .pending
    case .started: .running
    case .retryScheduled: .awaitingRetry
    case .attemptStarted(let e): e.attempt == 1 ? .running : .retrying
    case .completed(let e): e.cached ? .cached : .completed
    case .failed: .failed
    case .timedOut: .timedOut
    case .cancelRequested: .cancelling
    case .cancelled: .cancelled
    case .crashed: .crashed
    case .retried: .scheduled
    case .leaseExpired, .attemptSucceeded, .attemptFailed, .logTailTruncated, .logLossAccepted, .logSegmentsArchived,
      .logEventSkipped, .deploymentRegistered, .deploymentHandedOver, nil:
      nil
    }
  }

  /// One event as a JSON object: `sequence`, `time` (RFC 3339, UTC), `time_micros`, `run`,
  /// `run_event`, `type`, and `details` (the event's fields, as protobuf's JSON mapping with
  /// proto field names; results of known types are decoded under `result_json`).
  package static func json(sequence: UInt64, event: RunEvent, types: ResultTypes = .none) -> JSONValue {
    var details: JSONValue = .object([])
    if let text = try? event.jsonString(options: jsonOptions),
      case .object(let members)? = try? JSONValue(parsing: text)
    {
      // The event's oneof member: the only key besides the common fields.
      if let kind = members.first(where: { !["time_micros", "run_id", "run_event"].contains($0.key) }) {
        details = kind.value
      }
    }
    switch event.kind {
    case .completed(let e):
      if let result = json(of: e.result, type: e.resultType, types: types), case .object(var members) = details {
        members.append(.init("result_json", result))
        details = .object(members)
      }
    case .attemptSucceeded(let e):
      if let step = types.resultType(step: e.step), let result = json(of: e.result, type: step, types: types),
        case .object(var members) = details
      {
        members.append(.init("result_json", result))
        details = .object(members)
      }
    default: break
    }
    return .object([
      .init("sequence", .number(String(sequence))),
      .init("time", .string(event.time.description)),
      .init("time_micros", .number(String(event.timeMicros))),
      .init("run", .string(event.run?.description ?? "")),
      .init("run_event", .number(String(event.runEvent))),
      .init("type", .string(event.typeName)),
      .init("details", details),
    ])
  }

  /// A run as JSON (`gps flow-run ls|inspect --output json`).
  package static func json(_ run: Gps_V1_RunInfo, types: ResultTypes = .none) -> JSONValue {
    func time(_ micros: Int64) -> JSONValue { micros == 0 ? .null : .string(Timestamp(micros: micros).description) }
    var members: [JSONValue.Member] = [
      .init("id", .string(run.id)),
      .init("deployment", .string(run.deployment)),
      .init("flow", .string(run.flow)),
      .init("state", .string(run.state)),
      .init("state_since", time(run.stateSinceMicros)),
      .init("state_message", .string(run.stateMessage)),
      .init("parameters", (try? JSONValue(parsing: run.parametersJson)) ?? .string(run.parametersJson)),
      .init("idempotency_key", .string(run.idempotencyKey)),
      .init("tags", .array(run.tags.map(JSONValue.string))),
      .init("priority", .number(String(run.priority))),
      .init("scheduled_start", time(run.scheduledStartMicros)),
      .init("enqueued_by", .string(run.enqueuedBy)),
      .init("enqueued_at", time(run.enqueuedAtMicros)),
      .init("started_at", time(run.startedAtMicros)),
      .init("step", .string(run.step)),
      .init("step_attempt", .number(String(run.stepAttempt))),
      .init("attempts", .number(String(run.attempts))),
      .init("events", .number(String(run.eventCount))),
      .init("claims", .number(String(run.claims))),
      .init("requeues", .number(String(run.requeues))),
      .init("user_retries", .number(String(run.userRetries))),
      .init("first_sequence", .number(String(run.firstSequence))),
      .init("last_sequence", .number(String(run.lastSequence))),
      .init("archived", .bool(run.archived)),
      .init("lease_scheduler", run.leaseScheduler.isEmpty ? .null : .string(run.leaseScheduler)),
      .init("result_type", .string(run.resultType)),
    ]
    members.append(.init("result", json(of: run.result, type: run.resultType, types: types) ?? .null))
    return .object(members)
  }
}

/// What decodes results for display: the descriptors of registered deployments, and the result
/// type of each of their steps.
package struct ResultTypes: Sendable {
  package private(set) var pool = DescriptorPool()
  /// Step name → result type, over every deployment given (the first one wins).
  private var steps: [String: String] = [:]

  package static let none = ResultTypes()

  package init() {}

  package init(_ definitions: [DeploymentDefinition]) {
    for definition in definitions { add(definition) }
  }

  package mutating func add(_ definition: DeploymentDefinition) {
    try? pool.add(descriptorSet: definition.descriptorSet)
    for step in definition.steps where steps[step.name] == nil { steps[step.name] = step.resultType }
  }

  /// The types of every version of every deployment in `state`.
  package init(state: QueueState) {
    self.init(state.deployments.keys.sorted().flatMap { state.deployments[$0]!.reversed().map(\.definition) })
  }

  package func resultType(step: String) -> String? { steps[step] }
}
