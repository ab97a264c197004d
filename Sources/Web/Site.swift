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

/// The routes of the web UI and its API, over the engine the control API calls: every answer is
/// the one `gps` gets over gRPC, as JSON (proto field names, proto3 JSON mapping).
final class Site: Sendable {
  let engine: Engine
  let tokens: AccessTokens
  let metrics: WebMetrics
  /// Served over TLS: the sign-in cookie is then only ever sent over it.
  let secure: Bool
  /// The web server's port once it listens: the peer lookup of a loopback caller needs it.
  let localPort = Mutex<Int?>(nil)

  var queue: RunQueue { engine.queue }

  private let cachedTypes = DeploymentsCache<ResultTypes>()
  private let cachedDocument = DeploymentsCache<JSONValue>()

  var resultTypes: ResultTypes {
    cachedTypes.value(for: queue.deployments) { ResultTypes($0.map(\.definition)) }
  }

  /// The OpenAPI document with the newest deployment versions' parameter schemas.
  var openAPIDocument: JSONValue {
    cachedDocument.value(for: queue.deployments) { deployments in
      OpenAPI.document(
        deployments: deployments.compactMap { version in
          (try? engine.catalog.deployment(version).parameterSchema).map { (version.name, $0) }
        })
    }
  }

  init(engine: Engine, tokens: AccessTokens, metrics: WebMetrics, secure: Bool) {
    self.engine = engine
    self.tokens = tokens
    self.metrics = metrics
    self.secure = secure
  }

  static let jsonOptions: JSONEncodingOptions = {
    var options = JSONEncodingOptions()
    options.preserveProtoFieldNames = true
    return options
  }()

  static func json(_ message: some SwiftProtobuf.Message) throws -> JSONValue {
    try JSONValue(parsing: message.jsonString(options: jsonOptions))
  }

  /// A history event as JSON text, its run's id as the UUID string every other answer uses (proto
  /// JSON would give its 16 bytes in base64), so `event.run_id` is a run's `{id}` as it is. Text
  /// straight from the encoder: a page of 500 events is not parsed and written again.
  static func eventText(_ event: Gps_V1_HistoryEvent) throws -> String {
    var text = try event.jsonString(options: jsonOptions)
    guard let run = event.event.run else { return text }
    // Compact proto JSON: the event's own `run_id` is the first such member (a string inside the
    // event has its quotes escaped, so cannot look like it).
    if let range = text.range(of: "\"run_id\":\"" + Data(run.bytes).base64EncodedString() + "\"") {
      text.replaceSubrange(range, with: "\"run_id\":\"\(run)\"")
    }
    return text
  }

  func addRoutes(to router: Router<WebContext>) {
    // Errors thrown here are answered by ``AccessMiddleware`` (``WebError/from(_:)``), in the
    // API's JSON or as a page.
    let api = router.group("api")
    api.get("runs") { request, context in try await self.listRuns(request, context) }
    api.post("runs") { request, context in try await self.enqueue(request, context) }
    api.get("runs/:id") { request, context in try await self.getRun(request, context) }
    api.get("runs/:id/events") { request, context in try await self.runEvents(request, context) }
    api.get("runs/:id/stream") { request, context in try await self.runStream(request, context) }
    api.post("runs/:id/cancel") { request, context in try await self.cancelOrRetry(request, context, cancel: true) }
    api.post("runs/:id/retry") { request, context in try await self.cancelOrRetry(request, context, cancel: false) }
    api.get("deployments") { request, context in try await self.listDeployments(request, context) }
    api.get("deployments/:flow/:name") { request, context in try await self.getDeployment(request, context) }
    api.get("history") { request, context in try await self.history(request, context) }
    api.get("history/stream") { request, context in try await self.historyStream(request, context) }
    api.post("history/verify") { _, _ in try await self.verify() }
    api.get("openapi.json") { _, _ in Response.json(self.openAPIDocument) }
    api.get("cluster") { _, context in try await self.cluster(context) }
    router.get("healthz") { _, _ in Response.json(.object([.init("status", .string("ok"))])) }
    router.get("readyz") { _, _ in
      if self.engine.isStopping {
        return Response.json(.object([.init("status", .string("stopping"))]), status: .serviceUnavailable)
      }
      // A standby serves reads once it has copied the store's log; until then it is not ready.
      if let cluster = self.engine.cluster, !cluster.isCaughtUp(self.queue) {
        return Response.json(
          .object([
            .init("status", .string("catching up")), .init("role", .string("standby")),
            .init("problems", .array([.string("this standby has not copied the store's log up to its end yet")])),
          ]), status: .serviceUnavailable)
      }
      // Degraded still serves (200): a failed run index slows nothing a caller sees yet, and
      // taking the only server out of rotation would. The problem is said, and in a metric.
      if let failure = self.queue.indexStatus?.failure {
        return Response.json(
          .object([
            .init("status", .string("degraded")),
            .init("problems", .array([.string("the run index stopped committing: \(failure)")])),
          ]))
      }
      guard self.engine.cluster != nil else { return Response.json(.object([.init("status", .string("ready"))])) }
      return Response.json(
        .object([
          .init("status", .string("ready")), .init("role", .string(self.queue.isStandby ? "standby" : "leader")),
        ]))
    }
    router.get("metrics") { _, _ in
      Response(
        status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
        body: ResponseBody(byteBuffer: ByteBuffer(string: self.metrics.exposition(of: self.queue))))
    }
    Pages(site: self).addRoutes(to: router)
  }

  // MARK: Callers

  /// Who is at the other end of a connection without a token: the local user on loopback, else the peer.
  func localCaller(_ peer: String) -> String {
    LoopbackPeer.user(remotePeer: peer, localPort: localPort.withLock { $0 }) ?? "http:\(peer)"
  }

  /// Who is calling, once the caller's roles allow `method` (checked where the request enters, as
  /// the gRPC door does): a token's name, else the local user at the other end of a loopback
  /// connection (looked up when the engine first asks). What the engine records as the caller.
  func caller(for method: MethodDescriptor, _ context: WebContext) throws -> Caller {
    guard context.roles.allows(Role.needed(for: method)) else {
      throw Role.denial(of: method, to: context.tokenName ?? context.remotePeer, with: context.roles)
    }
    if let name = context.tokenName { return Caller(name: name, roles: context.roles) }
    let peer = context.remotePeer
    return Caller { [self] in localCaller(peer) }
  }
}

/// A value made from the newest deployment versions, made again only when one of them changes
/// (making one decodes every descriptor set).
final class DeploymentsCache<Value: Sendable>: Sendable {
  private let cached = Mutex<(versions: [String], value: Value)?>(nil)

  func value(for deployments: [DeploymentVersion], make: ([DeploymentVersion]) -> Value) -> Value {
    let versions = deployments.map { "\($0.name) \($0.version)" }
    if let cached = cached.withLock({ $0 }), cached.versions == versions { return cached.value }
    let value = make(deployments)
    cached.withLock { $0 = (versions, value) }
    return value
  }
}

/// History events as server-sent events, handed to the task that writes the response.
struct SSEEvents {
  /// Events held for a client at most.
  static let buffered = 4096

  /// The client is `buffered` events behind: the stream ends, to be resumed from its last id.
  struct FellBehind: Error {}

  let continuation: AsyncStream<ByteBuffer>.Continuation

  init(_ continuation: AsyncStream<ByteBuffer>.Continuation) { self.continuation = continuation }

  /// False when the buffer is full and the event was not taken.
  @discardableResult
  func send(event: String? = nil, id: UInt64? = nil, data: String) -> Bool {
    var text = ""
    if let event { text += "event: \(event)\n" }
    if let id { text += "id: \(id)\n" }
    for line in data.split(separator: "\n", omittingEmptySubsequences: false) { text += "data: \(line)\n" }
    if case .dropped = continuation.yield(ByteBuffer(string: text + "\n")) { return false }
    return true
  }

  func write(_ element: Gps_V1_HistoryEvent) async throws {
    try Task.checkCancellation()
    guard send(id: element.sequence, data: try Site.eventText(element)) else { throw FellBehind() }
  }
}
