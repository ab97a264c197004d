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

// The JSON API's runs: list, inspect, enqueue (through the engine), cancel and retry.
extension Site {
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
    _ = try caller(for: Gps_V1_Control.Method.ListRuns.descriptor, context)
    return try await engine.listRuns(list)
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
    guard let version, let registered = try? engine.catalog.deployment(version),
      let json = registered.descriptors.json(of: Array(info.result), type: info.resultType)
    else { return nil }
    return json
  }

  func getRun(_ request: Request, _ context: WebContext) async throws -> Response {
    let id = try context.parameters.require("id")
    _ = try caller(for: Gps_V1_Control.Method.GetRun.descriptor, context)
    return .json(try runAnswer(try await engine.runInfo(.with { $0.runID = id })))
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
    let caller = try caller(for: Gps_V1_Control.Method.Enqueue.descriptor, context)
    let result = try await engine.enqueue(enqueue, by: caller)
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
    let run =
      cancel
      ? try await engine.cancel(runRequest, by: caller(for: Gps_V1_Control.Method.CancelRun.descriptor, context))
      : try await engine.retry(runRequest, by: caller(for: Gps_V1_Control.Method.RetryRun.descriptor, context))
    return .json(try runAnswer(Gps_V1_RunInfo(run)))
  }
}
