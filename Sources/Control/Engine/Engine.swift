public import Flows
public import GPSModel
public import GRPCCore
public import Queue

/// The one API every door calls: the control service (gRPC), the web's JSON API and the `gps`
/// CLI without a server all enqueue through ``enqueue(_:by:)``, so a run is validated once, by
/// the same validator, and committed once, by the same command, whichever door it came in by.
///
/// Requests are the control API's messages (transport-neutral data), the caller is the principal
/// the door authenticated (never what the request says), and errors are the domain's
/// (``QueueError``, ``FlowsError``): each door turns them into its own answers.
public final class Engine: Sendable {
  /// The queue every command commits to.
  public let queue: RunQueue
  /// Validators of the registered deployment versions, built once per version.
  public let catalog: DeploymentCatalog

  public init(queue: RunQueue, catalog: DeploymentCatalog = DeploymentCatalog()) {
    self.queue = queue
    self.catalog = catalog
  }

  /// Validates `request` against its deployment's registered version and enqueues the run
  /// durably; a refused request writes nothing.
  public func enqueue(_ request: Gps_V1_EnqueueRunRequest, by principal: String) async throws -> EnqueueResult {
    let validated = try validate(request, by: principal)
    return try await queue.enqueue(validated)
  }

  /// Submits the run of `request` without waiting for it to be durable (an EnqueueStream waits
  /// for many at once, so that they share group commits).
  public func submit(_ request: Gps_V1_EnqueueRunRequest, by principal: String) throws -> EnqueueResult {
    let validated = try validate(request, by: principal)
    return try queue.submitEnqueue(validated)
  }

  /// The run `request` asks for, its parameters checked by the registered deployment's validator:
  /// the error keeps every problem with its path (the web API shows each beside its field).
  public func validate(_ request: Gps_V1_EnqueueRunRequest, by principal: String) throws(FlowsError)
    -> EnqueueRequest
  {
    let deployment = try queue.withState { state in
      Result { () throws(FlowsError) in try catalog.deployment(named: request.deployment, in: state) }
    }.get()
    return try deployment.enqueueRequest(
      parametersJSON: request.parametersJson.isEmpty ? "{}" : request.parametersJson,
      idempotencyKey: request.idempotencyKey, tags: request.tags,
      scheduledStart: request.scheduledStartMicros == 0 ? nil : Timestamp(micros: request.scheduledStartMicros),
      enqueuedBy: principal)
  }

  // MARK: Runs

  /// The run named by a full id or a unique prefix of at least 8 characters.
  public func run(named text: String) throws(RPCError) -> Run {
    try RunFilter.find(text, in: queue)
  }

  /// Cancels the run `request` names: at once when no scheduler holds it, else through Cancelling.
  public func cancel(_ request: Gps_V1_RunRequest, by principal: String) async throws -> Run {
    let id = try run(named: request.runID).id
    return try await queue.cancel(id, by: principal, reason: request.reason)
  }

  /// Runs a failed, crashed, timed-out or cancelled run again under the same id.
  public func retry(_ request: Gps_V1_RunRequest, by principal: String) async throws -> Run {
    let id = try run(named: request.runID).id
    return try await queue.retry(id, by: principal)
  }

  // MARK: Deployments

  /// Hands a deployment over to another principal, whose workers alone may then serve it.
  public func handOver(_ request: Gps_V1_HandOverDeploymentRequest, by principal: String) async throws
    -> DeploymentVersion
  {
    _ = try await queue.handOver(request.deployment, to: request.to, by: principal, note: request.note)
    guard let version = queue.withState({ $0.deployment(named: request.deployment) }) else {
      throw QueueError(code: .notFound, message: "deployment \(request.deployment) is gone")
    }
    return version
  }
}
