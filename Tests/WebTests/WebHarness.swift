import Control
import Flows
import Foundation
import GPSModel
import GPSTestSupport
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Queue
import RPC
import ReferenceFlow
import Services
import Synchronization
import Testing

@testable import Web

/// The web UI's routes over an engine in a temporary directory (the reference flow registered),
/// requests sent straight to the router: no server, no process, no port.
struct WebHarness: Sendable {
  let engine: Engine
  let web: RouterClient
  let data: String

  /// The log's events, with their sequences, once all that the queue has applied are durable
  /// (a run's state is applied, and answered, before its last events are on disk).
  func history() async throws -> [(UInt64, RunEvent)] {
    let applied = engine.queue.state.lastSequence
    try await eventually("the log to catch up") { engine.queue.durableSequence >= applied }
    return try loggedEvents(in: data)
  }

  /// Runs `body` with the harness. `tokens`: the server's tokens (none: every caller is the local
  /// user, with every role). `scheduler`: services A and B and a scheduler of the reference flow
  /// run in this process, so runs complete.
  static func run(
    tokens: AccessTokens = AccessTokens(), scheduler: Bool = false,
    _ body: @escaping @Sendable (WebHarness) async throws -> Void
  ) async throws {
    try await withTemporaryDirectory { directory in
      var configuration = WebServer.Configuration()
      configuration.tokens = tokens
      var options = QueueOptions()
      options.log.fsync = .none
      options.metrics = configuration.metrics.factory
      let data = directory.appendingPathComponent("data").path
      let queue = try RunQueue(directory: data, options: options)
      defer { queue.close() }
      let registry = DeploymentRegistry.standard
      _ = try await queue.register(
        registry.definitions, worker: "gps-server", by: ControlServer.selfPrincipal, serving: false)
      let engine = Engine(queue: queue, tokens: tokens)
      let site = WebServer.site(engine: engine, configuration: configuration)
      // The router's test client names the host `localhost`, port 80: the address this site serves.
      site.localPort.withLock { $0 = 80 }
      let app = Application(router: WebServer.router(for: site, configuration: configuration))
      let test: @Sendable (any TestClientProtocol) async throws -> Void = { client in
        try await body(WebHarness(engine: engine, web: RouterClient(client: client), data: data))
      }
      guard scheduler else {
        try await app.test(.router, test)
        return
      }
      let objects = directory.appendingPathComponent("objects")
      try objects.writeFile("a", Array("hello".utf8))
      try await withRunningServices(objectRoot: objects) { a, b in
        try await withServiceClients(a: a, b: b) { clients in
          let scheduler = Scheduler(
            queue: queue, registry: registry, dependencies: Dependencies(clients),
            options: SchedulerOptions(id: "web-test", concurrency: 4, heartbeatInterval: .seconds(1)),
            logger: Logger(label: "gps.test", factory: { _ in SwiftLogNoOpLogHandler() }))
          try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await scheduler.run() }
            group.addTask { try await queue.maintain(maximumWait: .milliseconds(20)) }
            defer { group.cancelAll() }
            try await app.test(.router, test)
          }
        }
      }
    }
  }
}

/// Requests to the router through Hummingbird's test client, answered as ``WebClient`` answers.
struct RouterClient: WebRequester {
  let client: any TestClientProtocol

  func send(_ method: String, _ path: String, body: String?, headers: [String: String], json: Bool) async throws
    -> WebAnswer
  {
    var fields = HTTPFields()
    for (name, value) in headers { fields[HTTPField.Name(name)!] = value }
    if body != nil, json, fields[.contentType] == nil { fields[.contentType] = "application/json" }
    let response = try await client.executeRequest(
      uri: path, method: HTTPRequest.Method(method)!, headers: fields, body: body.map { ByteBuffer(string: $0) })
    var answered: [String: String] = [:]
    for field in response.headers { answered[field.name.canonicalName] = field.value }
    return WebAnswer(status: Int(response.status.code), headers: answered, body: String(buffer: response.body))
  }
}
