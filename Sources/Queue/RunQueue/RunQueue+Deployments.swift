import Foundation
package import GPSModel
import SwiftProtobuf
import Synchronization

/// A worker as the queue last saw it: which deployments it serves, and when it last claimed or
/// watched for work. Kept in memory only: a restarted server knows a worker again at its next call.
package struct WorkerSighting: Sendable, Hashable {
  package var id: String
  package var deployments: Set<String>
  package var lastSeen: Timestamp
  /// Who the worker runs as (its calls' audit identity).
  package var principal: String

  package init(id: String, deployments: Set<String>, lastSeen: Timestamp, principal: String) {
    self.id = id
    self.deployments = deployments
    self.lastSeen = lastSeen
    self.principal = principal
  }
}

extension RunQueue {
  /// Records the definitions as deployment versions, atomically: a definition equal to its
  /// deployment's newest version writes nothing and answers that version; a new or changed one is
  /// a `DeploymentRegistered` event with the next version. Returns once the events are durable, with
  /// one version per definition. `serving`: the worker will serve them (it counts as seen); a
  /// server registering them on a worker's behalf says false.
  package func register(
    _ definitions: [DeploymentDefinition], worker: String, by principal: String, serving: Bool = true
  ) async throws -> [UInt32] {
    try EventLimits.check(name: worker, "worker")
    try EventLimits.check(text: principal, "registered_by")
    for definition in definitions {
      try Self.check(definition)
    }
    if serving { sawWorker(worker, serving: Set(definitions.map(\.name)), principal: principal) }
    var versions: [UInt32] = []
    try await commit { locked, time throws(QueueError) in
      // Versions count the definitions before them in this same call.
      var state = locked.state
      var events: [RunEvent] = []
      for definition in definitions {
        if let newest = state.deployment(named: definition.name), newest.definition == definition {
          versions.append(newest.version)
          continue
        }
        var registered = Gps_V1_DeploymentRegistered()
        registered.definition = definition
        registered.version = UInt32(state.deployments[definition.name]?.count ?? 0) + 1
        registered.worker = worker
        registered.registeredBy = principal
        let event = RunEvent.with {
          $0.timeMicros = time.micros
          $0.kind = .deploymentRegistered(registered)
        }
        try state.apply(event, sequence: locked.nextSequence + UInt64(events.count))
        events.append(event)
        versions.append(registered.version)
      }
      // A worker for runs that were waiting may have arrived.
      return .records(events, wake: true)
    }
    return versions
  }

  /// Gives `deployment` to `principal`: from the returned hand-over on, its workers (and admins)
  /// are the ones that register, claim, heartbeat and report for it. A `DeploymentHandedOver`
  /// event, returned once durable; handing it to its owner writes nothing.
  package func handOver(
    _ deployment: String, to principal: String, by admin: String, note: String
  ) async throws -> DeploymentHandOver {
    try EventLimits.check(name: principal, "to")
    try EventLimits.check(name: admin, "handed_over_by", optional: true)
    try EventLimits.check(text: note, "note")
    var handOver: DeploymentHandOver?
    try await commit { locked, time throws(QueueError) in
      guard let owner = locked.state.owner(of: deployment) else {
        throw QueueError(
          code: .notFound, message: "no deployment is named \(Self.quoted(deployment)); `gps deployment ls` lists them")
      }
      guard owner != principal else {
        let first = locked.state.deployments[deployment]!.first!
        handOver =
          locked.state.handOvers[deployment]
          ?? DeploymentHandOver(
            to: owner, by: first.registeredBy, note: "registered it first", at: first.registeredAt,
            sequence: first.sequence)
        return .unchanged(nil)
      }
      handOver = DeploymentHandOver(to: principal, by: admin, note: note, at: time, sequence: locked.nextSequence)
      let event = RunEvent.with {
        $0.timeMicros = time.micros
        $0.kind = .deploymentHandedOver(
          .with {
            $0.deployment = deployment
            $0.from = owner
            $0.to = principal
            $0.handedOverBy = admin
            $0.note = note
          })
      }
      // The new owner's workers may claim what waited for them.
      return .records([event], wake: true)
    }
    return handOver!
  }

  static func check(_ definition: DeploymentDefinition) throws(QueueError) {
    let parts = definition.name.split(separator: "/", omittingEmptySubsequences: false)
    guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty }), String(parts[0]) == definition.flow else {
      throw QueueError(
        code: .invalidArgument,
        message:
          "a deployment is named FLOW/NAME after its flow, e.g. \"\(definition.flow.isEmpty ? "my-flow" : definition.flow)/default\"; got \(quoted(definition.name))"
      )
    }
    guard !definition.steps.isEmpty else {
      throw QueueError(code: .invalidArgument, message: "deployment \(definition.name) has no steps")
    }
    guard definition.name.utf8.count <= 256 else {
      throw QueueError(code: .invalidArgument, message: "a deployment's name is at most 256 bytes")
    }
    try EventLimits.check(definition)
  }

  private static func quoted(_ text: String) -> String {
    "\"\(text.prefix(100))\(text.count > 100 ? "…" : "")\""
  }

  /// Every deployment's newest version, by name.
  package var deployments: [DeploymentVersion] {
    locked.withLock { locked in locked.state.deployments.keys.sorted().compactMap { locked.state.deployment(named: $0) }
    }
  }

  /// Records that `worker` is alive and serves `deployments`.
  package func sawWorker(_ worker: String, serving deployments: Set<String>, principal: String) {
    let now = clock.now()
    locked.withLock { locked in
      let known = locked.workers[worker]
      // The common case, a busy worker's every claim: only the time changes, nothing is allocated.
      if let known, known.deployments.isSuperset(of: deployments), principal.isEmpty || principal == known.principal {
        locked.workers[worker]!.lastSeen = now
        return
      }
      locked.workers[worker] = WorkerSighting(
        id: worker, deployments: deployments.union(known?.deployments ?? []), lastSeen: now,
        principal: principal.isEmpty ? known?.principal ?? "" : principal)
      // Workers gone for a day are forgotten: ids differ per process, so they would pile up.
      if locked.workers.count > 64 {
        locked.workers = locked.workers.filter { now - $0.value.lastSeen < .seconds(86_400) }
      }
    }
  }

  /// The workers seen serving `deployment`, most recently seen first.
  package func workers(serving deployment: String) -> [WorkerSighting] {
    locked.withLock { locked in
      locked.workers.values.filter { $0.deployments.contains(deployment) }.sorted { $0.lastSeen > $1.lastSeen }
    }
  }

  /// Whether a worker serving `deployment` was seen within a lease's length: a run enqueued now
  /// would be claimed.
  package func isReady(_ deployment: String) -> Bool {
    let now = clock.now()
    return workers(serving: deployment).contains { now - $0.lastSeen <= options.leaseDuration }
  }
}
