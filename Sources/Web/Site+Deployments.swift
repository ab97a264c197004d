import Control
import Flows
import Foundation
import GPSModel
import GRPCCore
import HTTPTypes
import Hummingbird
import NIOCore
import Queue
import SwiftProtobuf
import Synchronization

extension Site {
  // MARK: Deployments

  func listDeployments(_ request: Request, _ context: WebContext) async throws -> Response {
    _ = try caller(for: Gps_V1_Control.Method.ListDeployments.descriptor, context)
    return .json(try Self.json(engine.listDeployments(.init())))
  }

  func deploymentAnswer(_ flow: String, _ name: String, _ context: WebContext) throws -> (
    info: Gps_V1_DeploymentInfo, schema: JSONValue
  ) {
    let full = "\(flow)/\(name)"
    _ = try caller(for: Gps_V1_Control.Method.GetDeployment.descriptor, context)
    var info = try engine.deployment(.with { $0.name = full })
    let version = queue.withState { $0.deployment(named: full, version: info.version) }
    let schema = try version.map { try engine.catalog.deployment($0).parameterSchema } ?? .object([])
    // The descriptor set is for programs; the schema says the same for people and forms.
    info.definition.descriptorSet = Data()
    return (info, schema)
  }

  func getDeployment(_ request: Request, _ context: WebContext) async throws -> Response {
    let (info, schema) = try deploymentAnswer(
      try context.parameters.require("flow"), try context.parameters.require("name"), context)
    return .json(.object([.init("deployment", try Self.json(info)), .init("parameter_schema", schema)]))
  }
}
