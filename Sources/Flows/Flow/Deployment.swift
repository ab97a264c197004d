import Foundation
public import GPSModel
import GRPCCore
import SwiftProtobuf

/// A flow served under a name, with defaults: what `gps deployment run NAME` enqueues.
public struct Deployment: Sendable {
  /// `flow/deployment`, e.g. `server-flow/MyPrefectDeployer`.
  public var name: String
  public var flow: Flow
  /// Parameter defaults (JSON), by parameter name.
  public var defaults: [String: String]
  public var tags: [String]
  /// At most this many runs of the deployment hold a lease at once (nil: no limit).
  public var concurrencyLimit: Int?
  public var crashPolicy: CrashPolicy
  /// Limit on a whole run (zero: none).
  public var timeout: Duration
  public var priority: Int32
  public var description: String

  public init(
    name: String, flow: Flow, defaults: [String: String] = [:], tags: [String] = [], concurrencyLimit: Int? = nil,
    crashPolicy: CrashPolicy = CrashPolicy(maxRequeues: 1), timeout: Duration = .zero, priority: Int32 = 0,
    description: String = ""
  ) {
    precondition(name.hasPrefix(flow.name + "/"), "a deployment is named FLOW/NAME")
    self.name = name
    self.flow = flow
    self.defaults = defaults
    self.tags = tags
    self.concurrencyLimit = concurrencyLimit
    self.crashPolicy = crashPolicy
    self.timeout = timeout
    self.priority = priority
    self.description = description
  }

  /// The flow's parameters with this deployment's defaults.
  public var parameters: ParameterSet {
    ParameterSet(
      flow.parameters.parameters.map { parameter in
        var parameter = parameter
        if let value = defaults[parameter.name] { parameter.defaultJSON = value }
        return parameter
      })
  }

  /// The JSON Schema (draft 2020-12) of the deployment's parameters.
  public var parameterSchema: JSONValue { parameters.jsonSchema(title: name, pool: flow.descriptors) }

  /// What a worker registers with the server: everything but the code, and the descriptors of
  /// every type the parameters and results use.
  public var definition: DeploymentDefinition {
    var definition = DeploymentDefinition()
    definition.name = name
    definition.flow = flow.name
    definition.description_p = description
    definition.parameters = parameters.parameters.map { parameter in
      .with {
        $0.name = parameter.name
        $0.type = parameter.type
        $0.required = parameter.required
        $0.defaultJson = parameter.defaultJSON ?? ""
        $0.description_p = parameter.description
      }
    }
    definition.steps = flow.steps.map { step in
      .with {
        $0.name = step.name
        $0.maxAttempts = UInt32(clamping: step.retry.maxAttempts)
        $0.initialBackoffMicros = step.retry.initialBackoff.micros
        $0.backoffMultiplier = step.retry.multiplier
        $0.maxBackoffMicros = step.retry.maxBackoff.micros
        $0.jitter = step.retry.jitter
        $0.retryableCodes = step.retry.retryableCodes.map { Int32($0.rawValue) }.sorted()
        $0.timeoutMicros = step.timeout.micros
        $0.cacheResults = step.cacheResults
        $0.resultType = step.resultType
      }
    }
    let types = parameters.parameters.map(\.type) + flow.steps.map(\.resultType)
    definition.descriptorSet = flow.descriptors.descriptorSet(for: types)
    definition.tags = tags
    definition.concurrencyLimit = concurrencyLimit.map { UInt32(clamping: max(1, $0)) } ?? 0
    definition.timeoutMicros = timeout.micros
    definition.crashPolicy = .with {
      $0.maxRequeues = crashPolicy.maxRequeues
      $0.requeueDelayMicros = crashPolicy.requeueDelay.micros
    }
    definition.priority = priority
    definition.resultType = flow.resultType
    return definition
  }

  /// Validates `parametersJSON` (the one validator) and builds the request to enqueue.
  public func enqueueRequest(
    parametersJSON: String, idempotencyKey: String = "", tags extraTags: [String] = [],
    scheduledStart: Timestamp? = nil, enqueuedBy: String = ""
  ) throws(FlowsError) -> EnqueueRequest {
    let validated = try parameters.validate(json: parametersJSON, pool: flow.descriptors)
    var request = EnqueueRequest(
      deployment: name, flow: flow.name, parametersJSON: validated.json, parameters: validated.typed)
    request.idempotencyKey = idempotencyKey
    request.tags = tags + extraTags.filter { !tags.contains($0) }
    request.priority = priority
    request.scheduledStart = scheduledStart
    request.crashPolicy = crashPolicy
    request.enqueuedBy = enqueuedBy
    request.timeout = timeout
    return request
  }
}

/// The deployments a server or scheduler knows, by name.
public struct DeploymentRegistry: Sendable {
  public private(set) var deployments: [String: Deployment] = [:]

  public init(_ deployments: [Deployment] = []) {
    for deployment in deployments { register(deployment) }
  }

  public mutating func register(_ deployment: Deployment) {
    deployments[deployment.name] = deployment
  }

  public var names: [String] { deployments.keys.sorted() }

  public func deployment(named name: String) throws(FlowsError) -> Deployment {
    guard let deployment = deployments[name] else {
      let known = names.isEmpty ? "none are registered" : "known: \(names.joined(separator: ", "))"
      throw FlowsError(
        code: .unknownDeployment, message: "no deployment is named \(JSONValue.quoted(name)) (\(known))")
    }
    return deployment
  }

  /// The definitions of every deployment, for ``RunQueue/register(_:worker:by:)``.
  public var definitions: [DeploymentDefinition] { names.map { deployments[$0]!.definition } }
}
