import Foundation
package import GPSModel
import Synchronization

/// A deployment as the server knows it: a registered definition, without the flow's code. It
/// validates parameters (the one validator, against the definition's own descriptors) and builds
/// the JSON Schema, so the server and the CLI handle types they never linked.
package struct RegisteredDeployment: Sendable {
  package let version: DeploymentVersion
  package let parameters: ParameterSet
  package let descriptors: DescriptorPool

  package var name: String { version.name }
  package var definition: DeploymentDefinition { version.definition }

  package init(_ version: DeploymentVersion) throws(FlowsError) {
    self.version = version
    descriptors = try Self.descriptors(
      of: version.definition, what: "deployment \(version.name) version \(version.version)")
    parameters = Self.parameters(of: version.definition)
  }

  /// Checks a definition before it is registered: its descriptor set decodes and holds every type
  /// it names, so a worker finds out at registration, not at its first run.
  package static func check(_ definition: DeploymentDefinition) throws(FlowsError) {
    let what = "deployment \(JSONValue.quoted(definition.name, limit: 256))"
    guard definition.descriptorSet.count <= maximumDescriptorSetBytes else {
      throw FlowsError(
        code: .invalidParameter,
        message:
          "\(what): its descriptor set is \(definition.descriptorSet.count) bytes, more than the limit of \(maximumDescriptorSetBytes)"
      )
    }
    let pool = try descriptors(of: definition, what: what)
    let parameters = parameters(of: definition)
    try checkTypes(of: parameters, in: pool, deployment: definition.name)
    for parameter in parameters.parameters where ScalarParameterTypes.field(for: parameter.type) == nil {
      try pool.checkReferences(from: parameter.type, what: "\(what), parameter \(parameter.name)")
    }
    for type in [definition.resultType] + definition.steps.map(\.resultType) where !type.isEmpty {
      guard
        pool.message(type) != nil || ProtoJSON.wellKnownTypes[ProtoJSON.typeLabel(type)] != nil
          || ScalarParameterTypes.field(for: type) != nil
      else {
        let imports =
          pool.missingImports.first.map { " (\($0.file) imports \($0.missing), which it does not hold)" } ?? ""
        throw FlowsError(
          code: .invalidParameter,
          message:
            "\(what): the result type \(type) is not in its descriptor set\(imports); build it with protoc --include_imports --descriptor_set_out"
        )
      }
      try pool.checkReferences(from: type, what: "\(what), result \(type)")
    }
    // A default must be JSON that validates as its parameter: otherwise every enqueue that
    // leaves the parameter out would fail, long after the worker's author could see why.
    for parameter in parameters.parameters {
      guard let defaultJSON = parameter.defaultJSON else { continue }
      let value: JSONValue
      do {
        value = try JSONValue(parsing: defaultJSON)
      } catch {
        throw FlowsError(
          code: .invalidParameter,
          message: "\(what), parameter \(parameter.name): its default is not JSON: \(error)", cause: error)
      }
      do {
        _ = try ParameterSet([parameter]).validate(.object([.init(parameter.name, value)]), pool: pool)
      } catch {
        throw FlowsError(
          code: .invalidParameter,
          message: "\(what), parameter \(parameter.name): its default does not validate: \(error.message)")
      }
    }
  }

  /// The largest descriptor set a deployment may register.
  package static let maximumDescriptorSetBytes = 8 << 20

  private static func descriptors(of definition: DeploymentDefinition, what: String) throws(FlowsError)
    -> DescriptorPool
  {
    do {
      return try DescriptorPool(descriptorSet: definition.descriptorSet)
    } catch {
      throw FlowsError(
        code: .invalidParameter, message: "\(what) has a descriptor set that does not decode: \(error)", cause: error)
    }
  }

  private static func parameters(of definition: DeploymentDefinition) -> ParameterSet {
    ParameterSet(
      definition.parameters.map { parameter in
        ParameterSpec(
          name: parameter.name, type: parameter.type, required: parameter.required,
          defaultJSON: parameter.defaultJson.isEmpty ? nil : parameter.defaultJson,
          description: parameter.description_p)
      })
  }

  /// The JSON Schema (draft 2020-12) of the parameters.
  package var parameterSchema: JSONValue { parameters.jsonSchema(title: name, pool: descriptors) }

  /// Checks that every type the definition names is in its descriptor set.
  package func checkTypes() throws(FlowsError) {
    try Self.checkTypes(of: parameters, in: descriptors, deployment: name)
  }

  private static func checkTypes(
    of parameters: ParameterSet, in descriptors: DescriptorPool, deployment name: String
  ) throws(FlowsError) {
    var missing: [String] = []
    for parameter in parameters.parameters
    where ScalarParameterTypes.field(for: parameter.type) == nil
      && ProtoJSON.wellKnownTypes[ProtoJSON.typeLabel(parameter.type)] == nil
      && descriptors.message(parameter.type) == nil
    {
      missing.append("parameter \(parameter.name): \(parameter.type)")
    }
    guard missing.isEmpty else {
      throw FlowsError(
        code: .invalidParameter,
        message:
          "deployment \(name): the descriptor set lacks \(missing.joined(separator: ", ")) (build it with protoc --include_imports --descriptor_set_out)"
      )
    }
  }

  package func validate(json: String) throws(FlowsError) -> ValidatedParameters {
    try parameters.validate(json: json, pool: descriptors)
  }

  /// Validates `parametersJSON` and builds the request to enqueue, recording this version.
  package func enqueueRequest(
    parametersJSON: String, idempotencyKey: String = "", tags extraTags: [String] = [],
    scheduledStart: Timestamp? = nil, enqueuedBy: String = ""
  ) throws(FlowsError) -> EnqueueRequest {
    let validated = try validate(json: parametersJSON)
    let definition = version.definition
    var request = EnqueueRequest(
      deployment: name, flow: definition.flow, parametersJSON: validated.json, parameters: validated.typed)
    request.idempotencyKey = idempotencyKey
    request.tags = definition.tags + extraTags.filter { !definition.tags.contains($0) }
    request.priority = definition.priority
    request.scheduledStart = scheduledStart
    request.crashPolicy = CrashPolicy(
      maxRequeues: definition.crashPolicy.maxRequeues,
      requeueDelay: .microseconds(definition.crashPolicy.requeueDelayMicros))
    request.enqueuedBy = enqueuedBy
    request.timeout = .microseconds(definition.timeoutMicros)
    request.deploymentVersion = version.version
    return request
  }
}

/// Where the catalog finds a deployment's registered versions: the server's state, or anything
/// else that holds them.
package protocol DeploymentVersions {
  /// Version `version` of the deployment named `name` (0: the newest), or nil when none is registered.
  func deployment(named name: String, version: UInt32) -> DeploymentVersion?
  /// The names of every registered deployment, sorted.
  var deploymentNames: [String] { get }
}

/// Registered deployments built once per version: decoding a descriptor set for every enqueue
/// would cost more than the enqueue.
package final class DeploymentCatalog: Sendable {
  private let built = Mutex<[String: RegisteredDeployment]>([:])

  package init() {}

  /// The registered deployment for `version`, built on first use.
  package func deployment(_ version: DeploymentVersion) throws(FlowsError) -> RegisteredDeployment {
    let key = "\(version.name)\u{0}\(version.version)"
    if let known = built.withLock({ $0[key] }), known.version == version { return known }
    let deployment = try RegisteredDeployment(version)
    built.withLock { $0[key] = deployment }
    return deployment
  }

  /// Version `version` (0: the newest) of `name` among `versions`, or an error that lists what is
  /// registered.
  package func deployment(named name: String, version: UInt32 = 0, in versions: some DeploymentVersions)
    throws(FlowsError) -> RegisteredDeployment
  {
    guard let found = versions.deployment(named: name, version: version) else {
      throw Self.unknown(name, version: version, known: versions.deploymentNames)
    }
    return try deployment(found)
  }

  package static func unknown(_ name: String, version: UInt32 = 0, known: [String]) -> FlowsError {
    if version != 0, known.contains(name) {
      return FlowsError(
        code: .unknownDeployment, message: "deployment \(JSONValue.quoted(name)) has no version \(version)")
    }
    let list = known.isEmpty ? "none are registered" : "registered: \(known.joined(separator: ", "))"
    return FlowsError(
      code: .unknownDeployment, message: "no deployment is named \(JSONValue.quoted(name)) (\(list))")
  }
}
