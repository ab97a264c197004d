public import Flows
import Foundation
import GPSModel
public import Services
import SwiftProtobuf

extension DescriptorPool {
  /// The descriptors of services A and B's protos (`protos/gps/v1/{a,b,common}.proto`), committed
  /// by `make proto`.
  public static let gps: DescriptorPool = {
    guard let pool = try? DescriptorPool(base64: embeddedDescriptorSet) else {
      preconditionFailure("the embedded descriptor set does not decode; run `make proto`")
    }
    return pool
  }()
}

/// The reference flow `server-flow`: its parameter `data_info` is a `gps.v1.DataInfo`.
public enum ServerFlow {
  public static let name = "server-flow"
  public static let parameterName = "data_info"
  /// The parameters from the Prefect snippet; service A finds object `a` in the shipped sample store.
  public static let sampleDataInfoJSON = #"{"object_storage_urls": ["a"], "dataset": "b"}"#
  public static let parameters = ParameterSet([
    ParameterSpec(
      name: parameterName, type: "gps.v1.DataInfo",
      description:
        "The objects to process (s3://BUCKET/KEY, file:///path or a key under the object root) and their dataset.")
  ])

  /// Step `prepare` calls A with `data_info`; step `process` calls B with A's manifest; the run's
  /// result is B's `Response`.
  public static let flow = Flow(
    name: name, parameters: parameters,
    steps: [
      Step("prepare", timeout: .seconds(30)) { context in
        try await context.dependency(ServiceClients.self).a.prepare(
          try context.parameter(parameterName, as: Gps_V1_DataInfo.self), metadata: context.metadata,
          options: context.callOptions)
      },
      Step("process", timeout: .seconds(30)) { context in
        try await context.dependency(ServiceClients.self).b.process(
          try context.result(of: "prepare", as: Gps_V1_Manifest.self), metadata: context.metadata,
          options: context.callOptions)
      },
    ], descriptors: .gps)

  /// The snippet's deployment, `server-flow/MyPrefectDeployer`.
  public static let deployment = Deployment(
    name: "\(name)/MyPrefectDeployer", flow: flow, tags: ["server-flow"], concurrencyLimit: 256,
    description: "Prepares the objects with service A, processes the manifest with service B.")

  /// Validates the `data_info` parameter given as JSON, with the same validator as enqueue.
  public static func decodeDataInfo(_ json: String) throws(FlowsError) -> Gps_V1_DataInfo {
    let validated = try parameters.validate(json: #"{"\#(parameterName)": \#(json)}"#, pool: .gps)
    do {
      return try Gps_V1_DataInfo(serializedBytes: validated.value(of: parameterName) ?? [])
    } catch {
      throw FlowsError(code: .invalidParameter, message: "\(parameterName): \(error)", cause: error)
    }
  }
}

extension DeploymentRegistry {
  /// The deployments GPS ships: `server-flow/MyPrefectDeployer`.
  public static let standard = DeploymentRegistry([ServerFlow.deployment])
}
