package import Flows
import GPSModel
package import Queue

extension DeploymentRegistry {
  /// The concurrency limits of every deployment, for ``QueueOptions/limits``.
  package var concurrencyLimits: ConcurrencyLimits {
    ConcurrencyLimits(deployments: deployments.compactMapValues(\.concurrencyLimit))
  }
}
