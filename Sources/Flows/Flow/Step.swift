import Foundation
public import GPSModel
public import GRPCCore
import RPC
public import SwiftProtobuf

/// What a worker hands its steps: values by type (gRPC clients, a database pool, settings …),
/// given once to the ``Scheduler`` or the ``Worker`` and shared by every run.
public struct Dependencies: Sendable {
  private var values: [ObjectIdentifier: any Sendable] = [:]

  public init() {}

  /// The values, each under its own type.
  public init<each Value: Sendable>(_ value: repeat each Value) {
    repeat set(each value)
  }

  /// Adds `value` under its type, replacing a value of the same type.
  public mutating func set<Value: Sendable>(_ value: Value) {
    values[ObjectIdentifier(Value.self)] = value
  }

  /// The value of type `Value`, if the worker was given one.
  public func get<Value: Sendable>(_ type: Value.Type = Value.self) -> Value? {
    values[ObjectIdentifier(type)] as? Value
  }
}

/// What a step's body gets: the run's typed parameters, earlier steps' results, the worker's
/// dependencies, and the metadata (idempotency key) and deadline its calls must carry.
public struct StepContext: Sendable {
  public let runID: RunID
  public let deployment: String
  public let step: String
  public let attempt: UInt32
  public let parameters: ValidatedParameters
  /// Results of the steps before this one, serialized, by step name.
  public let results: [String: [UInt8]]
  public let dependencies: Dependencies
  public let timeout: Duration

  public init(
    runID: RunID, deployment: String, step: String, attempt: UInt32, parameters: ValidatedParameters,
    results: [String: [UInt8]], dependencies: Dependencies, timeout: Duration
  ) {
    self.runID = runID
    self.deployment = deployment
    self.step = step
    self.attempt = attempt
    self.parameters = parameters
    self.results = results
    self.dependencies = dependencies
    self.timeout = timeout
  }

  /// The worker's dependency of type `Value`; a step that needs one the worker lacks fails
  /// (FAILED_PRECONDITION, not retried).
  public func dependency<Value: Sendable>(_ type: Value.Type = Value.self) throws -> Value {
    guard let value = dependencies.get(type) else {
      throw RPCError(
        code: .failedPrecondition,
        message: "step \(step) needs a \(Value.self), which the worker was not given (pass it in its dependencies)")
    }
    return value
  }

  /// `RUN/STEP/ATTEMPT`: the same on every retry of this attempt's call, different per attempt.
  public var idempotencyKey: String { "\(runID)/\(step)/\(attempt)" }

  /// Metadata every call of the step sends: the idempotency key, and the step's deadline as
  /// `grpc-timeout`, so that the service gives up on the call when the scheduler does.
  public var metadata: Metadata { .stepCall(idempotencyKey: idempotencyKey, timeout: timeout) }

  /// Call options for the step's calls. They set no `timeout`: the scheduler enforces the step's
  /// deadline itself (it cancels the attempt, and with it the call, and records DEADLINE_EXCEEDED),
  /// and the deadline reaches the service in ``metadata``. A timeout here would arm a second timer
  /// and two more tasks for every call.
  public var callOptions: CallOptions { .defaults }

  /// A parameter as its message type.
  public func parameter<M: SwiftProtobuf.Message>(_ name: String, as type: M.Type) throws -> M {
    guard let bytes = parameters.value(of: name) else {
      throw FlowsError(code: .invalidParameter, message: "the run has no parameter \(name)")
    }
    return try M(serializedBytes: bytes)
  }

  /// A parameter of a plain type (``ScalarParameter``): `String`, `Int64`, `Double`, `Bool`, `[String]` …
  public func parameter<Value: ScalarParameter>(_ name: String, as type: Value.Type = Value.self) throws -> Value {
    guard let bytes = parameters.value(of: name) else {
      throw FlowsError(code: .invalidParameter, message: "the run has no parameter \(name)")
    }
    guard let value = Value(parameterBytes: bytes) else {
      throw FlowsError(code: .invalidParameter, message: "parameter \(name) is not a \(Value.parameterType)")
    }
    return value
  }

  /// An earlier step's result as its message type.
  public func result<M: SwiftProtobuf.Message>(of step: String, as type: M.Type) throws -> M {
    guard let bytes = results[step] else {
      throw FlowsError(code: .invalidParameter, message: "step \(step) has no result before step \(self.step)")
    }
    return try M(serializedBytes: bytes)
  }
}

/// One task step of a flow.
public struct Step: Sendable {
  public var name: String
  public var retry: RetryPolicy
  /// Limit on each attempt (its calls' deadline).
  public var timeout: Duration
  /// Reuse the result of an earlier successful attempt with the same input digest (Cached).
  public var cacheResults: Bool
  /// Full protobuf name of the result message.
  public var resultType: String
  /// The bytes whose SHA-256 is the step's input digest (the cache key).
  public var input: @Sendable (StepContext) throws -> [UInt8]
  /// Runs one attempt; returns the serialized result.
  public var body: @Sendable (StepContext) async throws -> [UInt8]

  /// A step whose body returns a protobuf message. The input digest covers the run's parameters
  /// and the results of the earlier steps unless `input` says otherwise.
  public init<Output: SwiftProtobuf.Message>(
    _ name: String, retry: RetryPolicy = RetryPolicy(), timeout: Duration = .seconds(30), cacheResults: Bool = false,
    input: (@Sendable (StepContext) throws -> [UInt8])? = nil,
    body: @escaping @Sendable (StepContext) async throws -> Output
  ) {
    self.name = name
    self.retry = retry
    self.timeout = timeout
    self.cacheResults = cacheResults
    resultType = Output.protoMessageName
    self.input =
      input ?? { context in
        var bytes = Array(context.parameters.json.utf8)
        for (step, result) in context.results.sorted(by: { $0.key < $1.key }) {
          bytes += Array(step.utf8) + [0] + result
        }
        return bytes
      }
    self.body = { context in try await body(context).serializedBytes() }
  }
}

/// A flow: named task steps run in order; the run's result is the last step's.
public struct Flow: Sendable {
  public var name: String
  public var parameters: ParameterSet
  public var steps: [Step]
  /// The protobuf types of the parameters and results (with their imports): the server validates
  /// runs against them without linking the flow's code.
  public var descriptors: DescriptorPool

  public init(name: String, parameters: ParameterSet, steps: [Step], descriptors: DescriptorPool) {
    precondition(!steps.isEmpty, "a flow needs at least one step")
    self.name = name
    self.parameters = parameters
    self.steps = steps
    self.descriptors = descriptors
  }

  public var resultType: String { steps.last!.resultType }
}
