import Control
import Flows
import Foundation
import GPSModel
import GPSTestSupport
import GRPCCore
import GRPCInProcessTransport
import Logging
import Queue
import RPC
import ReferenceFlow
import Services
import SwiftProtobuf
import Synchronization
import Testing

/// An engine over a queue in a temporary directory with `registry`'s deployments (registered by
/// the server itself, as `gps server start` registers the reference flow), for the duration of
/// `body`.
func withEngine(
  registry: DeploymentRegistry = .standard, streams: StreamLimits = StreamLimits(total: 100, perPrincipal: 10),
  tokens: AccessTokens = AccessTokens(), _ body: (Engine) async throws -> Void
) async throws {
  try await withTemporaryDirectory { directory in
    var options = QueueOptions()
    options.log.fsync = .none
    let queue = try RunQueue(directory: directory.appendingPathComponent("data").path, options: options)
    defer { queue.close() }
    _ = try await queue.register(registry.definitions, worker: "test", by: ControlServer.selfPrincipal, serving: false)
    try await body(Engine(queue: queue, streams: streams, tokens: tokens))
  }
}

/// ``withEngine(registry:streams:tokens:_:)`` with its control API served as the server serves it
/// (the access interceptor checking `tokens`, errors bounded) over the in-process transport (no
/// process, no port), and a client of it whose calls carry the token of ``CallToken`` (per task).
func withControlAPI(
  registry: DeploymentRegistry = .standard, tokens: AccessTokens = AccessTokens(),
  _ body: @Sendable (Engine, Gps_V1_Control.Client<InProcessTransport.Client>) async throws -> Void
) async throws {
  try await withEngine(registry: registry, tokens: tokens) { engine in
    let service = ControlService(engine: engine)
    let transport = InProcessTransport()
    try await withGRPCServer(
      transport: transport.server, services: [service],
      interceptors: [AccessInterceptor(tokens: tokens, localPort: { nil }), BoundedErrorsInterceptor()]
    ) { _ in
      try await withGRPCClient(transport: transport.client, interceptors: [CallTokenInterceptor()]) { client in
        try await body(engine, Gps_V1_Control.Client(wrapping: client))
      }
      // As the server does before it stops: streams (a worker's WatchWork) end.
      service.stop()
    }
  }
}

/// The token a call of ``withControlAPI(registry:tokens:_:)``'s client sends (nil: none).
enum CallToken {
  @TaskLocal static var value: String?
}

/// Sends the task's ``CallToken`` as a bearer token.
struct CallTokenInterceptor: ClientInterceptor {
  func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingClientRequest<Input>, context: ClientContext,
    next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
  ) async throws -> StreamingClientResponse<Output> {
    var request = request
    if let token = CallToken.value { request.metadata.replaceOrAddString("Bearer \(token)", forKey: "authorization") }
    return try await next(request, context)
  }
}

/// The answers of one EnqueueStream that sends all of `requests` before reading any answer.
func enqueueStream(
  _ requests: [Gps_V1_EnqueueRunRequest], over control: Gps_V1_Control.Client<InProcessTransport.Client>
) async throws -> [Gps_V1_EnqueueRunResponse] {
  try await control.enqueueStream(
    request: StreamingClientRequest { writer in try await writer.write(contentsOf: requests) }
  ) { response in
    var answers: [Gps_V1_EnqueueRunResponse] = []
    for try await answer in response.messages { answers.append(answer) }
    return answers
  }
}

let snippetParameters = #"{"data_info": {"object_storage_urls": ["a"], "dataset": "b"}}"#

func enqueueRequest(_ parameters: String, key: String = "") -> Gps_V1_EnqueueRunRequest {
  .with {
    $0.deployment = ServerFlow.deployment.name
    $0.parametersJson = parameters
    $0.idempotencyKey = key
  }
}

@Suite struct ControlAPITests {
  @Test func anEnqueueIsValidatedByTheEngineWhicheverDoorItComesIn() async throws {
    try await withControlAPI { engine, control in
      let before = engine.queue.durableSequence
      let bad = enqueueRequest(#"{"data_info": {"object_storage_urls": ["a"], "dataset": 5}}"#)
      // Over gRPC: the engine's FlowsError answers INVALID_ARGUMENT with the field's path.
      let rpc = await #expect(throws: RPCError.self) { try await control.enqueue(bad) }
      #expect(rpc?.code == .invalidArgument)
      #expect(rpc?.message.contains("data_info.dataset: expected a string, got the number 5") == true)
      // Called directly (as the web and the offline CLI do): the same error, the same words.
      let direct = #expect(throws: FlowsError.self) { try engine.validate(bad, by: Caller(name: "alice")) }
      #expect(direct?.code == .invalidParameter)
      #expect(direct?.message == rpc?.message)
      #expect(engine.queue.durableSequence == before, "a refused enqueue wrote nothing")

      // One path: a run enqueued over gRPC is the run the engine finds for the same key.
      let first = try await control.enqueue(enqueueRequest(snippetParameters, key: "k1"))
      #expect(first.created)
      let again = try await engine.enqueue(enqueueRequest(snippetParameters, key: "k1"), by: Caller(name: "bob"))
      #expect(!again.created)
      #expect(again.run.id.description == first.run.id)
      // Who enqueued is who the door authenticated (here the in-process peer), never the request's say.
      var claimed = enqueueRequest(snippetParameters, key: "k2")
      claimed.enqueuedBy = "mallory"
      let second = try await control.enqueue(claimed)
      #expect(second.run.enqueuedBy != "mallory")
      #expect(!second.run.enqueuedBy.isEmpty)
    }
  }

  @Test func domainErrorsAnswerWithTheirStatusAndMessage() async throws {
    try await withControlAPI { engine, control in
      var unknown = enqueueRequest(snippetParameters)
      unknown.deployment = "no/such"
      let notFound = await #expect(throws: RPCError.self) { try await control.enqueue(unknown) }
      #expect(notFound?.code == .notFound)
      #expect(notFound?.message.hasPrefix("no deployment is named \"no/such\"") == true)

      let run = try await control.enqueue(enqueueRequest(snippetParameters)).run
      // Retrying a run that has not ended is an illegal transition: FAILED_PRECONDITION, and
      // the client's QueueError has the code the server's had.
      let refused = await #expect(throws: RPCError.self) {
        try await control.retryRun(.with { $0.runID = run.id })
      }
      #expect(refused?.code == .failedPrecondition)
      let direct = await #expect(throws: QueueError.self) {
        try await engine.retry(.with { $0.runID = run.id }, by: Caller(name: "alice"))
      }
      #expect(direct?.code == .illegalTransition)
      #expect(refused.map { QueueError($0).code } == .illegalTransition)
      #expect(refused?.message == direct?.message)

      let cancelled = try await control.cancelRun(
        .with {
          $0.runID = String(run.id.prefix(8))
          $0.reason = "not needed"
        })
      #expect(cancelled.state == "Cancelled")
      let missing = await #expect(throws: RPCError.self) {
        try await control.cancelRun(.with { $0.runID = "00000000-0000-4000-8000-000000000000" })
      }
      #expect(missing?.code == .notFound)
    }
  }

  /// `GetCluster` on a server whose log is in files: one line, FAILED_PRECONDITION.
  @Test func aServerOnFilesBelongsToNoCluster() async throws {
    try await withControlAPI { _, control in
      let refused = await #expect(throws: RPCError.self) { try await control.getCluster(Gps_V1_GetClusterRequest()) }
      #expect(refused?.code == .failedPrecondition)
      #expect(refused?.message.contains("belongs to no cluster") == true, "\(String(describing: refused))")
    }
  }

  @Test func anEnqueueStreamAnswersARefusalInItsPlace() async throws {
    try await withControlAPI { engine, control in
      let requests = [
        enqueueRequest(snippetParameters), enqueueRequest(#"{"data_info": 3}"#), enqueueRequest(snippetParameters),
      ]
      let answers = try await enqueueStream(requests, over: control)
      #expect(answers.count == 3)
      #expect(answers[0].created && answers[2].created)
      #expect(answers[1].errorCode == "INVALID_ARGUMENT")
      #expect(answers[1].errorMessage.contains("data_info"))
      #expect(engine.queue.counts.total == 2)
    }
  }

  @Test func anEnqueueStreamAnswersEveryRequestInOrderOnceDurable() async throws {
    try await withControlAPI { engine, control in
      // Every fifth request has a bad parameter; all are sent before any answer is read.
      let requests = (0..<60).map { index in
        Gps_V1_EnqueueRunRequest.with {
          $0.deployment = "server-flow/MyPrefectDeployer"
          $0.parametersJson =
            index % 5 == 4
            ? #"{"data_info": {"dataset": \#(index)}}"# : #"{"data_info": {"dataset": "d\#(index)"}}"#
          $0.idempotencyKey = "key-\(index)"
        }
      }
      let answers = try await enqueueStream(requests, over: control)
      #expect(answers.count == requests.count)
      for (index, answer) in answers.enumerated() {
        if index % 5 == 4 {
          #expect(answer.errorCode == "INVALID_ARGUMENT")
          #expect(answer.errorMessage.contains("data_info.dataset: expected a string, got the number \(index)"))
        } else {
          #expect(answer.errorCode.isEmpty, "\(answer.errorMessage)")
          #expect(answer.created)
          #expect(answer.run.state == "Scheduled")
        }
      }
      // Exactly the accepted runs are in the log (read from its files as soon as the answers are
      // in: each was answered once durable), in the order they were sent.
      let logged = try QueueHistory(directory: engine.queue.directory).state(at: .sequence(.max)).runs.values
      #expect(logged.map(\.idempotencyKey) == (0..<60).filter { $0 % 5 != 4 }.map { "key-\($0)" })
      #expect(logged.map(\.id.description) == answers.filter { $0.errorCode.isEmpty }.map(\.run.id))
    }
  }

  @Test func aWorkerOverTheInProcessTransportRunsItsFlowToCompletion() async throws {
    let flow = Flow(
      name: "inproc", parameters: ServerFlow.parameters,
      steps: [
        Step("first") { context in try context.parameter("data_info", as: Gps_V1_DataInfo.self) },
        Step("second") { context in
          var info = try Gps_V1_DataInfo(serializedBytes: context.results["first"] ?? [])
          info.dataset += "!"
          return info
        },
      ], descriptors: .gps)
    let registry = DeploymentRegistry([Deployment(name: "inproc/default", flow: flow)])
    try await withControlAPI(registry: registry) { engine, control in
      let queue = RemoteQueue(client: control, scheduler: "inproc-worker", deployments: registry.names)
      let scheduler = Scheduler(
        queue: queue, registry: registry,
        options: SchedulerOptions(id: "inproc-worker", concurrency: 2, heartbeatInterval: .seconds(1)),
        logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
      try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await queue.watchWork() }
        group.addTask { try await scheduler.run() }
        group.addTask { try await engine.queue.maintain(maximumWait: .milliseconds(20)) }
        var request = enqueueRequest(snippetParameters)
        request.deployment = "inproc/default"
        let id = try await control.enqueue(request).run.id
        try await eventually("the run to complete") {
          let state = try? await control.getRun(.with { $0.runID = id }).state
          return state == "Completed"
        }
        let run = try await control.getRun(.with { $0.runID = id })
        #expect(try Gps_V1_DataInfo(serializedBytes: run.result).dataset == "b!")
        #expect(run.attempts == 2)
        group.cancelAll()
      }
    }
  }
}
