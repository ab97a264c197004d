public import Flows
import GPSModel
public import Queue

extension DeploymentRegistry {
  /// The concurrency limits of every deployment, for ``QueueOptions/limits``.
  public var concurrencyLimits: ConcurrencyLimits {
    ConcurrencyLimits(deployments: deployments.compactMapValues(\.concurrencyLimit))
  }
}
