import Flows
package import GPSModel
package import Queue

/// The scheduler embedded in `gps server start` uses the queue in its own process.
extension RunQueue: SchedulerQueue {
  package func register(_ definitions: [DeploymentDefinition], worker: String) async throws -> [UInt32] {
    try await register(definitions, worker: worker, by: ControlServer.selfPrincipal)
  }

  package func claim(scheduler: String, limit: Int, deployments: Set<String>?) async throws -> [Claim] {
    try await claim(scheduler: scheduler, limit: limit, maxParameterBytes: .max, deployments: deployments)
  }

  package func deployment(named name: String, version: UInt32) async throws -> DeploymentVersion? {
    withState { $0.deployment(named: name, version: version) }
  }
}
