import CoreMetrics
import GPSModel
import Synchronization

/// The queue's metrics, reported through swift-metrics to the factory of
/// ``QueueOptions/metrics`` (`gps server start` gives it swift-prometheus's, served on `/metrics`).
///
/// Everything counted here is counted once its events are durable, from the events themselves
/// and with their times: a write that fails counts nothing, and a replay at startup counts
/// nothing again. Labels are deployments, steps and states, never run ids; past
/// ``maximumDeployments`` deployments the rest share the label `other`, so a caller that invents
/// deployment names cannot grow the metrics without bound.
package final class QueueMetrics: Sendable {
  static let maximumDeployments = 500
  static let maximumSteps = 100

  /// The metric names, for the dashboards and the help texts of `/metrics`.
  enum Name {
    static let runs = "gps_runs"
    static let queueDepth = "gps_queue_depth"
    static let enqueued = "gps_runs_enqueued_total"
    static let completed = "gps_runs_completed_total"
    static let failed = "gps_runs_failed_total"
    static let timedOut = "gps_runs_timed_out_total"
    static let cancelled = "gps_runs_cancelled_total"
    static let crashed = "gps_runs_crashed_total"
    static let startLatency = "gps_run_start_latency_seconds"
    static let runDuration = "gps_run_duration_seconds"
    static let indexFailed = "gps_run_index_failed"
    static let stepAttempt = "gps_step_attempt_duration_seconds"
    static let stepRetries = "gps_step_retries_total"
    static let leasesExpired = "gps_leases_expired_total"
  }

  /// What each metric of the queue and its log measures: the `# HELP` lines of `/metrics`.
  package static let help: [String: String] = [
    Name.runs: "Runs in each state.",
    Name.queueDepth: "Runs waiting to start: Scheduled, Late and AwaitingRetry.",
    Name.enqueued: "Runs enqueued, by deployment.",
    Name.completed: "Runs that ended Completed (or Cached), by deployment.",
    Name.failed: "Runs that ended Failed, by deployment.",
    Name.timedOut: "Runs that ended TimedOut, by deployment.",
    Name.cancelled: "Runs that ended Cancelled, by deployment.",
    Name.crashed: "Runs that ended Crashed, by deployment.",
    Name.startLatency: "From a run's enqueue (or its scheduled start, if later) until it is Running.",
    Name.runDuration: "From a run's enqueue until it ends, by the state it ends in.",
    Name.indexFailed: "1 once the run index stopped committing (see /readyz and the server's log), else 0.",
    Name.stepAttempt: "Durations of step attempts, by deployment, step and outcome.",
    Name.stepRetries: "Step retries scheduled, by deployment and step.",
    Name.leasesExpired: "Leases that expired without a heartbeat (the scheduler vanished).",
    LogMetrics.Name.append: "From an append's submission until its batch is durable in the log.",
    LogMetrics.Name.fsync: "Time of one fdatasync of the log.",
    LogMetrics.Name.batchEvents: "Events per batch written to the log (one write and one fsync each).",
    LogMetrics.Name.batchBytes: "Bytes per batch written to the log.",
  ]

  /// Histogram buckets that fit what each timer measures (a log fsync takes microseconds, a run
  /// minutes), in seconds.
  package static let durationBuckets: [String: [Duration]] = {
    let fast: [Duration] = [
      .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
      .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
      .milliseconds(100), .milliseconds(250), .seconds(1),
    ]
    let slow: [Duration] = [
      .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
      .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5),
      .seconds(10), .seconds(30), .seconds(60), .seconds(300), .seconds(900), .seconds(3600),
    ]
    return [
      LogMetrics.Name.append: fast, LogMetrics.Name.fsync: fast, Name.startLatency: slow, Name.runDuration: slow,
      Name.stepAttempt: slow,
    ]
  }()

  package static let valueBuckets: [String: [Double]] = [
    LogMetrics.Name.batchEvents: (0...13).map { Double(1 << $0) },
    LogMetrics.Name.batchBytes: (8...23).map { Double(1 << $0) },
  ]

  private struct DeploymentMetrics {
    let enqueued: Counter
    let completed: Counter
    let failed: Counter
    let timedOut: Counter
    let cancelled: Counter
    let crashed: Counter
    /// By step, then by outcome.
    var attempts: [String: [String: CoreMetrics.Timer]] = [:]
    var retries: [String: Counter] = [:]
  }

  private let factory: any MetricsFactory
  private let startLatency: CoreMetrics.Timer
  private let leasesExpired: Counter
  private let stateGauges: [RunState: Gauge]
  private let queueDepth: Gauge
  private let indexFailed: Gauge
  private let handles = Mutex(Handles())

  /// Made on first use, so a series appears once it has something to report.
  private struct Handles {
    var deployments: [String: DeploymentMetrics] = [:]
    var runDurations: [RunState: CoreMetrics.Timer] = [:]
  }

  init(factory: any MetricsFactory) {
    self.factory = factory
    startLatency = CoreMetrics.Timer(label: Name.startLatency, factory: factory)
    leasesExpired = Counter(label: Name.leasesExpired, factory: factory)
    stateGauges = Dictionary(
      uniqueKeysWithValues: RunState.allCases.map {
        ($0, Gauge(label: Name.runs, dimensions: [("state", $0.rawValue)], factory: factory))
      })
    queueDepth = Gauge(label: Name.queueDepth, factory: factory)
    indexFailed = Gauge(label: Name.indexFailed, factory: factory)
    indexFailed.record(0)
  }

  /// The run index stopped committing.
  func recordIndexFailure() { indexFailed.record(1) }

  /// Sets the gauges of runs by state and of the runs waiting to start.
  func record(_ counts: StateCounts) {
    for (state, gauge) in stateGauges { gauge.record(counts[state]) }
    queueDepth.record(counts[.scheduled] + counts[.late] + counts[.awaitingRetry])
  }

  /// Counts what durable events of some runs did; `before` is each run as it was before them.
  func observe(_ changes: [(before: Run?, after: Run, kinds: [RunEvent.OneOf_Kind])], at time: Timestamp) {
    handles.withLock { handles in
      for change in changes {
        let run = change.after
        let label = label(of: run.deployment, among: handles.deployments)
        var metrics = handles.deployments[label] ?? makeDeployment(label)
        for kind in change.kinds {
          observe(kind, of: run, at: time, into: &metrics, label: label)
        }
        handles.deployments[label] = metrics
        if run.state.isTerminal, change.before?.state.isTerminal != true {
          let timer =
            handles.runDurations[run.state]
            ?? CoreMetrics.Timer(label: Name.runDuration, dimensions: [("state", run.state.rawValue)], factory: factory)
          handles.runDurations[run.state] = timer
          timer.record(time - run.enqueuedAt)
        }
      }
    }
  }

  private func observe(
    _ kind: RunEvent.OneOf_Kind, of run: Run, at time: Timestamp, into metrics: inout DeploymentMetrics,
    label: String
  ) {
    switch kind {
    case .enqueued:
      metrics.enqueued.increment()
    case .started:
      startLatency.record(time - max(run.enqueuedAt, run.scheduledStart))
    case .attemptSucceeded(let attempt):
      self.attempt(attempt.step, attempt.cached ? "cached" : "succeeded", in: &metrics, label: label)?
        .record(.microseconds(attempt.durationMicros))
    case .attemptFailed(let attempt):
      self.attempt(attempt.step, "failed", in: &metrics, label: label)?.record(.microseconds(attempt.durationMicros))
    case .retryScheduled(let retry):
      if metrics.retries[retry.step] == nil, metrics.retries.count < Self.maximumSteps {
        metrics.retries[retry.step] = Counter(
          label: Name.stepRetries, dimensions: [("deployment", label), ("step", retry.step)], factory: factory)
      }
      metrics.retries[retry.step]?.increment()
    case .leaseExpired:
      leasesExpired.increment()
    case .completed: metrics.completed.increment()
    case .failed: metrics.failed.increment()
    case .timedOut: metrics.timedOut.increment()
    case .cancelled: metrics.cancelled.increment()
    case .crashed: metrics.crashed.increment()
    default:
      break
    }
  }

  private func attempt(
    _ step: String, _ outcome: String, in metrics: inout DeploymentMetrics, label: String
  ) -> CoreMetrics.Timer? {
    if let timer = metrics.attempts[step]?[outcome] { return timer }
    guard metrics.attempts[step] != nil || metrics.attempts.count < Self.maximumSteps else { return nil }
    let timer = CoreMetrics.Timer(
      label: Name.stepAttempt, dimensions: [("deployment", label), ("step", step), ("outcome", outcome)],
      factory: factory)
    metrics.attempts[step, default: [:]][outcome] = timer
    return timer
  }

  private func label(of deployment: String, among deployments: [String: DeploymentMetrics]) -> String {
    deployments[deployment] != nil || deployments.count < Self.maximumDeployments ? deployment : "other"
  }

  private func makeDeployment(_ label: String) -> DeploymentMetrics {
    func counter(_ name: String) -> Counter {
      Counter(label: name, dimensions: [("deployment", label)], factory: factory)
    }
    return DeploymentMetrics(
      enqueued: counter(Name.enqueued), completed: counter(Name.completed), failed: counter(Name.failed),
      timedOut: counter(Name.timedOut), cancelled: counter(Name.cancelled), crashed: counter(Name.crashed))
  }

}

extension CoreMetrics.Timer {
  /// Records `duration` (a negative one, from a clock step or a worker's report, as zero; one too
  /// long for 64 bits of nanoseconds as the longest that fits).
  func record(_ duration: Duration) {
    let (seconds, attoseconds) = duration.components
    recordNanoseconds(
      max(0, seconds.multipliedSaturated(by: 1_000_000_000).addingSaturated(attoseconds / 1_000_000_000)))
  }
}
