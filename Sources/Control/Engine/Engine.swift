package import Flows
package import GPSModel
import GRPCCore
package import Queue
import Synchronization

/// The one API every door calls: the control service (gRPC), the web's JSON API and the `gps`
/// CLI without a server enqueue, read runs and deployments, follow the history and serve work
/// through it, so a run is validated once, by the same validator, and committed once, by the same
/// command, whichever door it came in by.
///
/// Requests are the control API's messages (transport-neutral data), the caller is the one the
/// door authenticated (never what the request says), histories are `AsyncSequence`s, and errors
/// are the domain's (``QueueError``, ``FlowsError``, or an `RPCError` for a bad request): each
/// door turns them into its own answers.
package final class Engine: Sendable {
  /// The queue every command commits to.
  package let queue: RunQueue
  /// Reads of runs, deployments and the history, as the CLI makes them over the files.
  package let reads: QueueReads
  /// Following streams open at once (histories, watches, work signals), in all and per caller:
  /// one budget for every door.
  package let streams: StreamLimits
  /// Who may call, when the server checks tokens: a deployment is handed over only to one of them.
  let tokens: AccessTokens?
  /// The longest a stream of work signals stays silent: a remote scheduler also looks this often.
  let idleSignal: Duration
  private let stopping = Atomic<Bool>(false)
  /// The signals of open work-signal streams, poked when the engine stops.
  let workSignals = Mutex<[ObjectIdentifier: WakeSignal]>([:])
  /// The cluster this server belongs to, when its log is in a store; nil: the data directory's files.
  package let cluster: ClusterMembership?

  package init(
    queue: RunQueue, catalog: DeploymentCatalog = DeploymentCatalog(),
    streams: StreamLimits = StreamLimits(total: 10_000, perPrincipal: 2_500), tokens: AccessTokens? = nil,
    idleSignal: Duration = .seconds(1), cluster: ClusterMembership? = nil
  ) {
    self.queue = queue
    self.cluster = cluster
    reads = QueueReads(queue: queue, catalog: catalog)
    self.streams = streams
    self.tokens = tokens
    self.idleSignal = idleSignal
  }

  /// Validators of the registered deployment versions, built once per version.
  package var catalog: DeploymentCatalog { reads.catalog }

  /// Ends the streams (histories, watches, work signals) so the server can shut down.
  package func stop() {
    stopping.store(true, ordering: .sequentiallyConsistent)
    queue.endDurableWaits()
    for signal in workSignals.withLock({ Array($0.values) }) { signal.signal() }
  }

  package var isStopping: Bool { stopping.load(ordering: .sequentiallyConsistent) }

  // MARK: Enqueue

  /// Validates `request` against its deployment's registered version and enqueues the run
  /// durably; a refused request writes nothing.
  package func enqueue(_ request: Gps_V1_EnqueueRunRequest, by caller: Caller) async throws -> EnqueueResult {
    let validated = try validate(request, by: caller)
    return try await queue.enqueue(validated)
  }

  /// Submits the run of `request` without waiting for it to be durable (an EnqueueStream waits
  /// for many at once, so that they share group commits).
  package func submit(_ request: Gps_V1_EnqueueRunRequest, by caller: Caller) throws -> EnqueueResult {
    let validated = try validate(request, by: caller)
    return try queue.submitEnqueue(validated)
  }

  /// The run `request` asks for, its parameters checked by the registered deployment's validator:
  /// the error keeps every problem with its path (the web API shows each beside its field).
  package func validate(_ request: Gps_V1_EnqueueRunRequest, by caller: Caller) throws(FlowsError)
    -> EnqueueRequest
  {
    let deployment = try queue.withState { state in
      Result { () throws(FlowsError) in try catalog.deployment(named: request.deployment, in: state) }
    }.get()
    return try deployment.enqueueRequest(
      parametersJSON: request.parametersJson.isEmpty ? "{}" : request.parametersJson,
      idempotencyKey: request.idempotencyKey, tags: request.tags,
      scheduledStart: request.scheduledStartMicros == 0 ? nil : Timestamp(micros: request.scheduledStartMicros),
      enqueuedBy: caller.name)
  }

  // MARK: Run commands

  /// Cancels the run `request` names: at once when no scheduler holds it, else through Cancelling.
  package func cancel(_ request: Gps_V1_RunRequest, by caller: Caller) async throws -> Run {
    let id = try await run(named: request.runID).id
    return try await queue.cancel(id, by: caller.name, reason: request.reason)
  }

  /// Runs a failed, crashed, timed-out or cancelled run again under the same id.
  package func retry(_ request: Gps_V1_RunRequest, by caller: Caller) async throws -> Run {
    let id = try await run(named: request.runID).id
    return try await queue.retry(id, by: caller.name)
  }

  /// Archives (and with `delete`, removes) the log's sealed segments before a time or sequence.
  /// The segments are moved and the note written on a blocking pool's thread: the note waits
  /// for its fsync.
  package func archive(_ request: Gps_V1_ArchiveLogRequest, by caller: Caller) async throws -> ArchiveReport {
    let bound: ArchiveBound
    switch request.before {
    case .beforeTimeMicros(let micros): bound = .time(Timestamp(micros: micros))
    case .beforeSequence(let sequence): bound = .sequence(sequence)
    case nil: throw RPCError(code: .invalidArgument, message: "say before which time or sequence to archive")
    }
    // Who archived is who the door authenticated; what the client calls itself is a label beside it.
    let label = request.archivedBy
    try EventLimits.check(name: label, "archived_by", optional: true)
    let name = caller.name
    let by = label.isEmpty || label == name ? name : "\(name) (as \(label))"
    let queue = queue
    return try await blocking {
      try queue.archive(before: bound, delete: request.delete, archivedBy: by, dryRun: request.dryRun)
    }
  }

  // MARK: Deployment commands

  /// Hands a deployment over to another principal, whose workers alone may then serve it: with
  /// tokens, one the tokens file names.
  package func handOver(_ request: Gps_V1_HandOverDeploymentRequest, by caller: Caller) async throws
    -> Gps_V1_DeploymentInfo
  {
    if let tokens, !tokens.isEmpty, !tokens.names.contains(request.to) {
      throw RPCError(
        code: .invalidArgument,
        message:
          "no token in the server's tokens file is named \(JSONValue.quoted(String(request.to.prefix(256)))); hand the deployment to one of: \(tokens.names.sorted().joined(separator: ", "))"
      )
    }
    _ = try await queue.handOver(request.deployment, to: request.to, by: caller.name, note: request.note)
    // The hand-over found the deployment: it has a newest version.
    guard let version = queue.withState({ $0.deployment(named: request.deployment) }) else {
      throw QueueError(code: .notFound, message: "deployment \(request.deployment) is gone")
    }
    return info(version, withDefinition: false)
  }
}
