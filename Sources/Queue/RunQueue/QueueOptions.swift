public import CoreMetrics
public import GPSModel

/// Concurrency limits: at most this many runs of a deployment, or with a tag, hold a lease at once.
/// A deployment's limit here overrides the one its registered definition sets.
public struct ConcurrencyLimits: Sendable, Hashable {
  public var deployments: [String: Int]
  public var tags: [String: Int]

  public init(deployments: [String: Int] = [:], tags: [String: Int] = [:]) {
    self.deployments = deployments
    self.tags = tags
  }

  /// The first limit that `run` would exceed if it were claimed now, or nil. Slots in use come from
  /// the state (leased runs), so a crash can never leak one.
  /// `pending`: runs about to be claimed in the same commit, whose slots are not in the state yet.
  func fullSlot(for run: Run, in state: QueueState, pending: [Run] = []) -> ReadyIndex.Slot? {
    if let limit = deployments[run.deployment] ?? state.registeredLimit(of: run.deployment),
      state.slotsByDeployment[run.deployment, default: 0] + pending.count(where: { $0.deployment == run.deployment })
        >= limit
    {
      return .deployment(run.deployment)
    }
    for tag in run.tags {
      if let limit = tags[tag],
        state.slotsByTag[tag, default: 0] + pending.count(where: { $0.tags.contains(tag) }) >= limit
      {
        return .tag(tag)
      }
    }
    return nil
  }
}

/// Options of a ``RunQueue``.
public struct QueueOptions: Sendable {
  public var log = LogOptions()
  /// How long a claim holds a run without a heartbeat.
  public var leaseDuration: Duration = .seconds(30)
  /// A Scheduled run not claimed this long after its scheduled start is marked Late (Prefect: 15 s).
  public var lateAfter: Duration = .seconds(15)
  /// A snapshot is written after this many events (and at a clean close).
  public var snapshotEvery = 200_000
  public var limits = ConcurrencyLimits()
  /// The largest parameters a run may have, in bytes of their JSON: an enqueue beyond it is
  /// refused (``QueueError/Code-swift.struct/tooLarge``) before anything is written.
  public var maxParameterBytes = 1 << 20
  /// Where the queue and its log report their metrics (runs by state, totals per deployment,
  /// latencies, step attempts, appends and fsyncs); nil: they are not measured at all. An
  /// application that bootstrapped swift-metrics passes `MetricsSystem.factory`.
  public var metrics: (any MetricsFactory)?
  /// Terminal runs leave memory for the run index (`DATA/index/runs.db`), which replaces the
  /// snapshots; nil: every run stays in memory and snapshots are written.
  public var runIndex: RunIndexOptions?
  /// How long an idempotency key returns its run: enqueueing the key again after this creates a
  /// new run, which takes the key over. Nil (the default): for as long as the queue holds the run.
  public var idempotencyWindow: Duration?
  /// Called once when the run index stops committing (a full disk, a file made read-only): the
  /// queue goes on without it, terminal runs stay in memory, and ``RunQueue/indexStatus`` says why.
  public var onIndexFailure: (@Sendable (QueueError) -> Void)?
  /// Open as a standby of a store: no command is accepted (each answers
  /// ``QueueError/Code-swift.struct/notLeader``) and the state advances only by the batches the
  /// leader committed (``RunQueue/follow(_:)``), until ``RunQueue/promote(committingTo:)``.
  package var standby = false

  public init() {}
}

extension QueueOptions {
  /// What every opener of a data directory shares, the server and a `gps` command without one
  /// alike: terminal runs live in the run index (not in memory), so whichever opened the queue
  /// last left the index as the other expects it. Each adds only its own: the server checks
  /// sealed segments after it is ready, a command takes the lock as a command.
  public static var dataDirectory: QueueOptions {
    var options = QueueOptions()
    options.runIndex = RunIndexOptions()
    return options
  }
}
