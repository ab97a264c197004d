package import Flows
import GPSModel
package import Queue
import RPC

extension Scheduler {
  /// The results of cacheable steps recorded in the log, keyed as the scheduler's cache is:
  /// reads the whole history, and only when some deployment caches a step.
  package static func cachedResults(
    in history: QueueHistory, registry: DeploymentRegistry
  ) throws -> [String: [UInt8]] {
    let cacheable = Set(
      registry.deployments.values.flatMap { deployment in
        deployment.flow.steps.filter(\.cacheResults).map { "\(deployment.name)/\($0.name)" }
      })
    guard !cacheable.isEmpty else { return [:] }
    var deployments: [RunID: String] = [:]
    var started: [RunID: (step: String, attempt: UInt32, digest: [UInt8])] = [:]
    var results: [String: [UInt8]] = [:]
    try history.events { _, event in
      guard let run = event.run else { return true }
      switch event.kind {
      case .enqueued(let enqueued):
        deployments[run] = enqueued.deployment
      case .attemptStarted(let attempt):
        started[run] = (attempt.step, attempt.attempt, Array(attempt.inputDigest))
      case .attemptSucceeded(let outcome):
        if let deployment = deployments[run], let start = started[run], start.step == outcome.step,
          start.attempt == outcome.attempt, cacheable.contains("\(deployment)/\(outcome.step)")
        {
          results["\(deployment)/\(outcome.step)/\(start.digest.hexString)"] = Array(outcome.result)
        }
      default:
        break
      }
      return true
    }
    return results
  }
}
