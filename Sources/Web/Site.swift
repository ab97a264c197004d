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

/// The routes of the web UI and its API, over the control API's implementation: every answer is
/// the one `gps` gets over gRPC, as JSON (proto field names, proto3 JSON mapping).
final class Site: Sendable {
  let control: ControlService
  let tokens: AccessTokens
  let metrics: WebMetrics
  /// Served over TLS: the sign-in cookie is then only ever sent over it.
  let secure: Bool
  /// The web server's port once it listens: the peer lookup of a loopback caller needs it.
  let localPort = Mutex<Int?>(nil)

  var queue: RunQueue { control.queue }

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
          (try? control.catalog.deployment(version).parameterSchema).map { (version.name, $0) }
        })
    }
  }

  init(control: ControlService, tokens: AccessTokens, metrics: WebMetrics, secure: Bool) {
    self.control = control
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
    let api = router.group("api")
    api.get("runs") { request, context in try await self.respond(request) { try await self.listRuns(request, context) }
    }
    api.post("runs") { request, context in try await self.respond(request) { try await self.enqueue(request, context) }
    }
    api.get("runs/:id") { request, context in
      try await self.respond(request) { try await self.getRun(request, context) }
    }
    api.get("runs/:id/events") { request, context in
      try await self.respond(request) { try await self.runEvents(request, context) }
    }
    api.get("runs/:id/stream") { request, context in
      try await self.respond(request) { try self.runStream(request, context) }
    }
    api.post("runs/:id/cancel") { request, context in
      try await self.respond(request) { try await self.cancelOrRetry(request, context, cancel: true) }
    }
    api.post("runs/:id/retry") { request, context in
      try await self.respond(request) { try await self.cancelOrRetry(request, context, cancel: false) }
    }
    api.get("deployments") { request, context in
      try await self.respond(request) { try await self.listDeployments(request, context) }
    }
    api.get("deployments/:flow/:name") { request, context in
      try await self.respond(request) { try await self.getDeployment(request, context) }
    }
    api.get("history") { request, context in
      try await self.respond(request) { try await self.history(request, context) }
    }
    api.get("history/stream") { request, context in
      try await self.respond(request) { try self.historyStream(request, context) }
    }
    api.post("history/verify") { request, context in try await self.respond(request) { try await self.verify() } }
    api.get("openapi.json") { request, _ in
      try await self.respond(request) { .json(self.openAPIDocument) }
    }
    router.get("healthz") { _, _ in Response.json(.object([.init("status", .string("ok"))])) }
    router.get("readyz") { _, _ in
      if self.control.isStopping {
        return Response.json(.object([.init("status", .string("stopping"))]), status: .serviceUnavailable)
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
      return Response.json(.object([.init("status", .string("ready"))]))
    }
    router.get("metrics") { _, _ in
      Response(
        status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
        body: ResponseBody(byteBuffer: ByteBuffer(string: self.metrics.exposition(of: self.queue))))
    }
    Pages(site: self).addRoutes(to: router)
  }

  /// Runs `body`, answering its error as an error response.
  func respond(_ request: Request, _ body: () async throws -> Response) async throws -> Response {
    do {
      return try await body()
    } catch {
      return WebError.from(error).response(for: request)
    }
  }

  // MARK: Calls of the control API

  /// Calls a control API method as `context`'s caller: the same principal rules as over gRPC (a
  /// token's name, else the local user at the other end of a loopback connection).
  func call<T>(
    _ method: MethodDescriptor, _ context: WebContext, _ body: (ServerContext) async throws -> T
  ) async throws -> T {
    let peer = context.remotePeer
    // The role the method needs, checked where the request enters, as the gRPC door does.
    guard context.roles.allows(Role.needed(for: method)) else {
      throw Role.denial(of: method, to: context.tokenName ?? peer, with: context.roles)
    }
    let principal: Principal.Source =
      if let name = context.tokenName {
        Principal.Source(name: name, roles: context.roles)
      } else {
        Principal.Source { [self] in localCaller(peer) }
      }
    return try await withServerContextRPCCancellationHandle { handle in
      let server = ServerContext(descriptor: method, remotePeer: peer, localPeer: "http", cancellation: handle)
      return try await Principal.$source.withValue(principal) { try await body(server) }
    }
  }

  /// Who is at the other end of a connection without a token: the local user on loopback, else the peer.
  func localCaller(_ peer: String) -> String {
    LoopbackPeer.user(remotePeer: peer, localPort: localPort.withLock { $0 }) ?? "http:\(peer)"
  }

  func principal(_ context: WebContext) async throws -> String {
    try await call(Gps_V1_Control.Method.Enqueue.descriptor, context) { server in Principal.current ?? server.remotePeer
    }
  }

  // MARK: Runs

  /// The runs that a query asks for (`state`, `deployment`, `tag`, `enqueued_after`,
  /// `enqueued_before`, `limit`, `cursor`): one page, from the control API. The API and the runs
  /// page read the same query.
  func runs(_ request: Request, _ context: WebContext, defaultLimit: UInt32 = 100) async throws
    -> Gps_V1_ListRunsResponse
  {
    let query = request.uri.queryParameters
    var list = Gps_V1_ListRunsRequest()
    list.states = query.getAll("state").flatMap { $0.split(separator: ",").map(String.init) }
    list.deployment = query.get("deployment") ?? ""
    list.tag = query.get("tag") ?? ""
    list.enqueuedAfterMicros = try Self.time(query.get("enqueued_after"), "enqueued_after")
    list.enqueuedBeforeMicros = try Self.time(query.get("enqueued_before"), "enqueued_before")
    list.limit = try Self.limit(query.get("limit"), default: defaultLimit)
    list.cursor = query.get("cursor") ?? ""
    return try await call(Gps_V1_Control.Method.ListRuns.descriptor, context) { server in
      try await control.listRuns(request: list, context: server)
    }
  }

  /// A page of runs: the encoder's text as it is (a page of 100 runs is not parsed and written
  /// again).
  func listRuns(_ request: Request, _ context: WebContext) async throws -> Response {
    .json(text: try await runs(request, context).jsonString(options: Self.jsonOptions))
  }

  /// A run as the API shows it: the control API's RunInfo, and its result as JSON when the
  /// deployment registered the result's type.
  func runAnswer(_ info: Gps_V1_RunInfo) throws -> JSONValue {
    var members: [JSONValue.Member] = [.init("run", try Self.json(info))]
    if !info.result.isEmpty, let json = resultJSON(info) { members.append(.init("result_json", json)) }
    return .object(members)
  }

  func resultJSON(_ info: Gps_V1_RunInfo) -> JSONValue? {
    let version = queue.withState { state in state.deployment(named: info.deployment, version: info.deploymentVersion) }
    guard let version, let registered = try? control.catalog.deployment(version),
      let json = registered.descriptors.json(of: Array(info.result), type: info.resultType)
    else { return nil }
    return json
  }

  func getRun(_ request: Request, _ context: WebContext) async throws -> Response {
    let id = try context.parameters.require("id")
    let info = try await call(Gps_V1_Control.Method.GetRun.descriptor, context) { server in
      try await control.getRun(request: .with { $0.runID = id }, context: server)
    }
    return .json(try runAnswer(info))
  }

  func enqueue(_ request: Request, _ context: WebContext) async throws -> Response {
    var request = request
    let body = try await request.collectBody(limit: context.maxUploadSize)
    let value = try Self.json(body)
    guard case .object(let members) = value else { throw WebError.badRequest("the body is a JSON object") }
    var enqueue = Gps_V1_EnqueueRunRequest()
    var startIn: Duration?
    for member in members {
      switch (member.key, member.value) {
      case ("deployment", .string(let name)): enqueue.deployment = name
      case ("parameters", .object): enqueue.parametersJson = member.value.text
      case ("idempotency_key", .string(let key)): enqueue.idempotencyKey = key
      case ("tags", .array(let tags)):
        enqueue.tags = try tags.map { tag in
          guard case .string(let text) = tag else { throw WebError.badRequest("tags: expected strings") }
          return text
        }
      case ("scheduled_start", .string(let text)):
        guard let time = Self.parseTime(text) else {
          throw WebError.badRequest(
            "scheduled_start: expected an RFC 3339 time such as 2026-12-01T12:00:00Z, got \(JSONValue.quoted(text, limit: 100))"
          )
        }
        enqueue.scheduledStartMicros = time.micros
      case ("start_in", .string(let text)):
        guard let duration = Self.parseDuration(text) else {
          throw WebError.badRequest(
            "start_in: expected a duration such as 90s, 5m or 2h, got \(JSONValue.quoted(text, limit: 100))")
        }
        startIn = duration
      case (let key, _)
      where ["deployment", "parameters", "idempotency_key", "tags", "scheduled_start", "start_in"].contains(key):
        throw WebError.badRequest("\(key): \(Self.expected[key]!), got \(member.value.described)")
      default:
        throw WebError.badRequest("\(JSONValue.quoted(member.key, limit: 100)): unknown field")
      }
    }
    guard !enqueue.deployment.isEmpty else { throw WebError.badRequest("deployment: required") }
    if let startIn { enqueue.scheduledStartMicros = (SystemClock().now() + startIn).micros }
    let result = try await control.engine.enqueue(enqueue, by: try await principal(context))
    let answer: JSONValue = .object([
      .init("run", try Self.json(Gps_V1_RunInfo(result.run))), .init("created", .bool(result.created)),
    ])
    return .json(answer, status: result.created ? .created : .ok)
  }

  static let expected = [
    "deployment": "expected a string", "parameters": "expected a JSON object", "idempotency_key": "expected a string",
    "tags": "expected an array of strings", "scheduled_start": "expected an RFC 3339 time string",
    "start_in": "expected a duration string",
  ]

  func cancelOrRetry(_ request: Request, _ context: WebContext, cancel: Bool) async throws -> Response {
    let id = try context.parameters.require("id")
    var request = request
    let body = try await request.collectBody(limit: 64 << 10)
    var reason = ""
    if body.readableBytes > 0 {
      guard case .object(let members) = try Self.json(body) else {
        throw WebError.badRequest("the body is a JSON object, such as {\"reason\": \"…\"}")
      }
      for member in members {
        guard member.key == "reason", case .string(let text) = member.value else {
          throw WebError.badRequest("\(JSONValue.quoted(member.key, limit: 100)): unknown field (only reason is)")
        }
        reason = text
      }
    }
    let runRequest = Gps_V1_RunRequest.with {
      $0.runID = id
      $0.reason = reason
    }
    let info =
      cancel
      ? try await call(Gps_V1_Control.Method.CancelRun.descriptor, context) { server in
        try await control.cancelRun(request: runRequest, context: server)
      }
      : try await call(Gps_V1_Control.Method.RetryRun.descriptor, context) { server in
        try await control.retryRun(request: runRequest, context: server)
      }
    return .json(try runAnswer(info))
  }

  // MARK: Events

  /// Events of the log from `from` on (only `run`'s, when given), at most `limit`.
  func events(
    from: UInt64, fromTime: Int64 = 0, run: String = "", limit: Int, _ context: WebContext
  ) async throws -> (events: [Gps_V1_HistoryEvent], more: Bool) {
    let collected = Collected(limit: limit)
    let read = Gps_V1_ReadHistoryRequest.with {
      $0.fromSequence = from
      $0.fromTimeMicros = fromTime
      $0.runID = run
      // One more than the page: it tells whether there is another.
      $0.limit = UInt32(limit + 1)
    }
    do {
      try await call(Gps_V1_Control.Method.ReadHistory.descriptor, context) { server in
        try await control.readHistory(request: read, response: RPCWriter(wrapping: collected), context: server)
      }
    } catch is Collected.Full {}
    return collected.result
  }

  func runEvents(_ request: Request, _ context: WebContext) async throws -> Response {
    let id = try context.parameters.require("id")
    let query = request.uri.queryParameters
    let after = try Self.number(query.get("after"), "after") ?? 0
    let limit = Int(try Self.limit(query.get("limit"), default: 500, maximum: 5000))
    let run = try await call(Gps_V1_Control.Method.GetRun.descriptor, context) { server in
      try await control.getRun(request: .with { $0.runID = id }, context: server)
    }
    let (events, more) = try await events(
      from: max(after + 1, run.firstSequence), run: run.id, limit: limit, context)
    return try eventPage(events, more: more)
  }

  func eventPage(_ events: [Gps_V1_HistoryEvent], more: Bool) throws -> Response {
    var text = "{\"events\":[" + (try events.map(Self.eventText).joined(separator: ",")) + "]"
    if more, let last = events.last { text += ",\"next_after\":\"\(last.sequence)\"" }
    return .json(text: text + "}")
  }

  func history(_ request: Request, _ context: WebContext) async throws -> Response {
    let query = request.uri.queryParameters
    let after = try Self.number(query.get("after"), "after") ?? 0
    let fromTime = try Self.time(query.get("from_time"), "from_time")
    let limit = Int(try Self.limit(query.get("limit"), default: 500, maximum: 5000))
    let (events, more) = try await events(
      from: after + 1, fromTime: fromTime, run: query.get("run") ?? "", limit: limit, context)
    return try eventPage(events, more: more)
  }

  /// Server-sent events: each durable event as JSON (`id:` its sequence), from `after` (or the
  /// browser's `Last-Event-ID`) on, until the run ends (for a run) or the client goes away.
  func sse(
    _ request: Request, _ context: WebContext, run: String, method: MethodDescriptor
  ) throws -> Response {
    // A stream lasts: beyond the server's or the caller's share of them, 503 and when to retry
    // (an EventSource retries by itself).
    let caller = context.tokenName ?? localCaller(context.remotePeer)
    if let refusal = control.streams.refusal(for: caller) {
      throw WebError(status: .serviceUnavailable, code: "RESOURCE_EXHAUSTED", message: refusal.message, retryAfter: 5)
    }
    let query = request.uri.queryParameters
    let lastID = try Self.number(request.headers[HTTPField.Name("Last-Event-ID")!], "Last-Event-ID")
    let after = try lastID ?? Self.number(query.get("after"), "after") ?? 0
    let control = control
    let read = Gps_V1_ReadHistoryRequest.with {
      $0.fromSequence = after + 1
      $0.runID = run
      $0.follow = true
    }
    let body = ResponseBody { writer in
      // Bounded: a client that reads slower than the log grows is sent what was buffered, then
      // the stream closes without `end`, and the browser reconnects from its Last-Event-ID.
      let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream(
        bufferingPolicy: .bufferingOldest(SSEEvents.buffered))
      let events = SSEEvents(continuation)
      try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
          defer { continuation.finish() }
          do {
            try await self.call(method, context) { server in
              try await control.readHistory(request: read, response: RPCWriter(wrapping: events), context: server)
            }
            events.send(event: "end", data: "{}")
          } catch let error as RPCError {
            events.send(event: "end", data: WebError(error).json.text)
          } catch {}  // The client went away, or fell behind (SSEEvents.FellBehind).
        }
        // A client that went away fails the write: the reader is cancelled with it.
        for await buffer in stream { try await writer.write(buffer) }
        group.cancelAll()
      }
      try await writer.finish(nil)
    }
    return Response(
      status: .ok,
      headers: [
        .contentType: "text/event-stream", .cacheControl: "no-store", HTTPField.Name("X-Accel-Buffering")!: "no",
      ],
      body: body)
  }

  func runStream(_ request: Request, _ context: WebContext) throws -> Response {
    let id = try context.parameters.require("id")
    guard let run = try? control.run(id) else { throw WebError.notFound("no run \(JSONValue.quoted(id, limit: 100))") }
    return try sse(request, context, run: run.id.description, method: Gps_V1_Control.Method.WatchRun.descriptor)
  }

  func historyStream(_ request: Request, _ context: WebContext) throws -> Response {
    try sse(
      request, context, run: request.uri.queryParameters.get("run") ?? "",
      method: Gps_V1_Control.Method.ReadHistory.descriptor)
  }

  func verify() async throws -> Response {
    let report: VerifyReport
    let directory = queue.directory
    do {
      // The whole log is read: off the concurrency pool's threads, which serve every request.
      report = try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async {
          continuation.resume(with: Result { try LogVerifier(directory: directory).verify() })
        }
      }
    } catch {
      return .json(
        .object([.init("ok", .bool(false)), .init("problem", .string(String("\(error)".prefix(2000))))]))
    }
    var members: [JSONValue.Member] = [
      .init("ok", .bool(report.problem == nil)),
      .init("segments", .number(String(report.segments))), .init("batches", .number(String(report.batches))),
      .init("records", .number(String(report.records))), .init("last_sequence", .number(String(report.lastSequence))),
    ]
    if let anchor = report.anchor {
      members.append(.init("anchor_first_sequence", .number(String(anchor.firstSequence))))
    }
    if let problem = report.problem { members.append(.init("problem", .string(problem))) }
    return .json(.object(members))
  }

  // MARK: Deployments

  func listDeployments(_ request: Request, _ context: WebContext) async throws -> Response {
    let answer = try await call(Gps_V1_Control.Method.ListDeployments.descriptor, context) { server in
      try await control.listDeployments(request: .init(), context: server)
    }
    return .json(try Self.json(answer))
  }

  func deploymentAnswer(_ flow: String, _ name: String, _ context: WebContext) async throws -> (
    info: Gps_V1_DeploymentInfo, schema: JSONValue
  ) {
    let full = "\(flow)/\(name)"
    var info = try await call(Gps_V1_Control.Method.GetDeployment.descriptor, context) { server in
      try await control.getDeployment(request: .with { $0.name = full }, context: server)
    }
    let version = queue.withState { $0.deployment(named: full, version: info.version) }
    let schema = try version.map { try control.catalog.deployment($0).parameterSchema } ?? .object([])
    // The descriptor set is for programs; the schema says the same for people and forms.
    info.definition.descriptorSet = Data()
    return (info, schema)
  }

  func getDeployment(_ request: Request, _ context: WebContext) async throws -> Response {
    let (info, schema) = try await deploymentAnswer(
      try context.parameters.require("flow"), try context.parameters.require("name"), context)
    return .json(.object([.init("deployment", try Self.json(info)), .init("parameter_schema", schema)]))
  }

  // MARK: Bodies

  /// A request's body as JSON. Text that is not UTF-8 is refused naming the field that holds it:
  /// replaced by U+FFFD it would be stored as something the client never sent (gRPC refuses it too).
  static func json(_ body: ByteBuffer) throws -> JSONValue {
    let bytes = body.readableBytesView
    let text = String(decoding: bytes, as: UTF8.self)
    let value: JSONValue
    do {
      value = try JSONValue(parsing: text)
    } catch {
      throw WebError.badRequest("the body is not JSON: \(error)")
    }
    if String(validating: bytes, as: UTF8.self) == nil {
      let offset = Self.firstInvalidUTF8(bytes)
      let path = Self.pathOfReplacement(in: value).map { "at \($0) " } ?? ""
      throw WebError.badRequest(
        "the body is not valid UTF-8: \(path)(byte \(offset)); send text as UTF-8, and binary data as base64")
    }
    return value
  }

  /// The offset of the first byte that does not begin or continue a valid UTF-8 sequence.
  static func firstInvalidUTF8(_ bytes: some Collection<UInt8>) -> Int {
    var decoder = UTF8()
    var iterator = bytes.makeIterator()
    var offset = 0
    while true {
      switch decoder.decode(&iterator) {
      case .scalarValue(let scalar): offset += UTF8.width(scalar)
      case .emptyInput, .error: return offset
      }
    }
  }

  /// The path of the first string or key holding U+FFFD (where invalid UTF-8 was replaced).
  static func pathOfReplacement(in value: JSONValue, path: String = "") -> String? {
    var pending: [(JSONValue, String)] = [(value, path)]
    while let (value, path) = pending.popLast() {
      switch value {
      case .string(let text) where text.unicodeScalars.contains("\u{FFFD}"): return path.isEmpty ? "the body" : path
      case .array(let items):
        for (index, item) in items.enumerated().reversed() { pending.append((item, "\(path)[\(index)]")) }
      case .object(let members):
        for member in members.reversed() {
          let child = path.isEmpty ? member.key : "\(path).\(member.key)"
          if member.key.unicodeScalars.contains("\u{FFFD}") { return child }
          pending.append((member.value, child))
        }
      default: break
      }
    }
    return nil
  }

  // MARK: Query values

  /// A page size: any whole number from 1; larger than `maximum` gets `maximum`.
  static func limit(_ text: String?, default value: UInt32 = 100, maximum: UInt32 = 1000) throws -> UInt32 {
    guard let text else { return value }
    let digits = text.hasPrefix("+") ? text.dropFirst() : Substring(text)
    guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), digits.contains(where: { $0 != "0" })
    else {
      throw WebError.badRequest("limit: expected a whole number from 1, got \(JSONValue.quoted(text, limit: 100))")
    }
    return UInt32(min(UInt64(digits) ?? .max, UInt64(maximum)))
  }

  /// The largest sequence a request may name: the next one (`after + 1`) must still be a number.
  static let maximumSequence = UInt64(Int64.max)

  /// A sequence number, from 0 to ``maximumSequence``; nil when absent.
  static func number(_ text: String?, _ name: String) throws -> UInt64? {
    guard let text else { return nil }
    guard text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
      let value = UInt64(text), value <= maximumSequence
    else {
      throw WebError.badRequest(
        "\(name): expected a sequence number from 0 to \(maximumSequence), got \(JSONValue.quoted(text, limit: 100))")
    }
    return value
  }

  /// A time given as RFC 3339 (`2026-12-01T12:00:00Z`) or microseconds since the epoch; 0 when absent.
  static func time(_ text: String?, _ name: String) throws -> Int64 {
    guard let text, !text.isEmpty else { return 0 }
    // Microseconds as the document says: up to 18 digits, no sign.
    if text.count <= 18, text.allSatisfy({ $0.isASCII && $0.isNumber }), let micros = Int64(text) { return micros }
    guard let time = parseTime(text) else {
      throw WebError.badRequest(
        "\(name): expected an RFC 3339 time such as 2026-12-01T12:00:00Z, got \(JSONValue.quoted(text, limit: 100))")
    }
    return time.micros
  }

  static func parseTime(_ text: String) -> Timestamp? {
    // A browser's datetime-local value has no zone and maybe no seconds: taken as UTC.
    var candidate = text
    if candidate.count == 16 { candidate += ":00" }
    if candidate.count == 19 { candidate += "Z" }
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    guard let date = formatter.date(from: candidate) ?? ISO8601DateFormatter().date(from: candidate) else {
      return nil
    }
    return Timestamp(date)
  }

  static func parseDuration(_ text: String) -> Duration? {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)]
    for (suffix, scale) in units where text.hasSuffix(suffix) {
      // At most a million days: beyond the clock's range it would be a crash.
      guard let value = Double(text.dropLast(suffix.count)), value >= 0, value * scale <= 86_400_000_000 else {
        return nil
      }
      return .milliseconds(Int64(value * scale * 1000))
    }
    return nil
  }
}

/// Collects events until `limit`, then one more tells there are more and stops the stream.
final class Collected: RPCWriterProtocol, Sendable {
  struct Full: Error {}
  let limit: Int
  private let state = Mutex<(events: [Gps_V1_HistoryEvent], more: Bool)>(([], false))

  init(limit: Int) { self.limit = limit }

  var result: (events: [Gps_V1_HistoryEvent], more: Bool) { state.withLock { $0 } }

  func write(_ element: Gps_V1_HistoryEvent) async throws {
    let full = state.withLock { state -> Bool in
      guard state.events.count < limit else {
        state.more = true
        return true
      }
      state.events.append(element)
      return false
    }
    if full { throw Full() }
  }

  func write(contentsOf elements: some Sequence<Gps_V1_HistoryEvent>) async throws {
    for element in elements { try await write(element) }
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
struct SSEEvents: RPCWriterProtocol {
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

  func write(contentsOf elements: some Sequence<Gps_V1_HistoryEvent>) async throws {
    for element in elements { try await write(element) }
  }
}
