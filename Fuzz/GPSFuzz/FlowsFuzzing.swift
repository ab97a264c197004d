import Flows
import Foundation
import GPSModel
import Queue
import SwiftProtobuf

/// Entry points for coverage-guided fuzzing (`make fuzz`) and for replaying its corpora in tests.
enum FlowsFuzzing {
  /// Parameters of every kind the validator handles: messages of the log and the control API
  /// (oneofs, maps, enums, nested and repeated messages, 64-bit integers), well-known types and scalars.
  static let parameters = ParameterSet([
    ParameterSpec(name: "event", type: "gps.v1.Event", required: false),
    ParameterSpec(name: "definition", type: "gps.v1.DeploymentDefinition", required: false),
    ParameterSpec(name: "data_info", type: "gps.v1.DataInfo", required: false),
    ParameterSpec(name: "at", type: "google.protobuf.Timestamp", required: false),
    ParameterSpec(name: "wait", type: "google.protobuf.Duration", required: false),
    ParameterSpec(name: "extra", type: "google.protobuf.Struct", required: false),
    ParameterSpec(name: "count", type: "google.protobuf.Int64Value", required: false, defaultJSON: "7"),
    ParameterSpec(name: "sizes", type: "repeated int64", required: false),
    ParameterSpec(name: "ratio", type: "double", required: false),
    ParameterSpec(name: "name", type: "string", required: false),
  ])

  /// JSON parameter validation on `data` as text: refused with problems, or accepted, and then
  /// the canonical JSON it answers validates to itself, and every typed value decodes back to JSON.
  static func parameters(_ data: [UInt8], pool: DescriptorPool) {
    let text = String(decoding: data, as: UTF8.self)
    guard let validated = try? parameters.validate(json: text, pool: pool) else { return }
    guard let again = try? parameters.validate(json: validated.json, pool: pool) else {
      preconditionFailure("the canonical JSON \(validated.json) does not validate")
    }
    precondition(again == validated, "canonical JSON is not a fixed point: \(validated.json) → \(again.json)")
    for typed in validated.typed where ScalarParameterTypes.field(for: typed.type) == nil {
      _ = pool.json(of: typed.value, type: typed.type)
    }
  }

  /// Registration on `data` as a serialized `DeploymentDefinition`: checked as the server checks
  /// one; what passes registers, and its schema and every parameter's default render.
  static func registration(_ data: [UInt8]) {
    guard let definition = try? DeploymentDefinition(serializedBytes: data) else { return }
    do {
      try RegisteredDeployment.check(definition)
      try EventLimits.check(definition)
    } catch {
      return
    }
    let version = DeploymentVersion(
      definition: definition, version: 1, registeredAt: .zero, worker: "fuzz", registeredBy: "fuzz", sequence: 1)
    guard let registered = try? RegisteredDeployment(version) else {
      preconditionFailure("a definition that passed the checks does not build")
    }
    _ = registered.parameterSchema.text
    _ = registered.descriptors.jsonSchemas(of: definition.parameters.map(\.type))
    _ = try? registered.validate(json: "{}")
  }
}
