import Flows
import GPSModel
import GPSTestSupport
import ReferenceFlow

/// An empty queue at `path` with `server-flow/MyPrefectDeployer` registered, as `gps server start`
/// leaves one: what offline commands find.
func createServerFlowQueue(at path: String) async throws {
  try await createQueue(at: path, registering: DeploymentRegistry.standard.definitions)
}
