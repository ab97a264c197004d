import Flows
package import Queue

/// The catalog of deployments (Flows) looks versions up in the queue's state through this narrow
/// interface: Flows does not depend on the queue.
extension QueueState: DeploymentVersions {
  package var deploymentNames: [String] { deployments.keys.sorted() }
}
