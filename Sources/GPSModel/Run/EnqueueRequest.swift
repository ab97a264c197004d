/// A request to create a run.
public struct EnqueueRequest: Sendable {
  /// `flow/deployment`.
  public var deployment: String
  public var flow: String
  /// The validated parameters as a JSON object, and as typed protobuf messages.
  public var parametersJSON: String
  public var parameters: [RunParameter]
  /// Enqueueing the same key again returns the existing run; empty: no deduplication.
  public var idempotencyKey = ""
  public var tags: [String] = []
  /// Higher runs first.
  public var priority: Int32 = 0
  /// When the run may start; nil: now.
  public var scheduledStart: Timestamp?
  public var crashPolicy = CrashPolicy()
  public var enqueuedBy = ""
  public var timeout: Duration = .zero
  /// The new run's id; nil: a random UUID.
  public var id: RunID?
  /// The deployment version the parameters were validated against (0: none registered).
  public var deploymentVersion: UInt32 = 0

  public init(deployment: String, flow: String, parametersJSON: String = "{}", parameters: [RunParameter] = []) {
    self.deployment = deployment
    self.flow = flow
    self.parametersJSON = parametersJSON
    self.parameters = parameters
  }
}

/// The run an enqueue created, or the one that already had its idempotency key (`created` false).
public struct EnqueueResult: Sendable {
  public var run: Run
  /// False when the idempotency key named an existing run, which is returned instead.
  public var created: Bool

  package init(run: Run, created: Bool) {
    self.run = run
    self.created = created
  }
}
