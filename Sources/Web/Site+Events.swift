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

// Events: pages of a run's or the log's history, server-sent event streams, verify.
extension Site {
  // MARK: Events

  /// Events of the log from `from` on (only `run`'s, when given), at most `limit`.
  func events(
    from: UInt64, fromTime: Int64 = 0, run: String = "", limit: Int, _ context: WebContext
  ) async throws -> (events: [Gps_V1_HistoryEvent], more: Bool) {
    let read = Gps_V1_ReadHistoryRequest.with {
      $0.fromSequence = from
      $0.fromTimeMicros = fromTime
      $0.runID = run
      // One more than the page: it tells whether there is another.
      $0.limit = UInt32(limit + 1)
    }
    var events: [Gps_V1_HistoryEvent] = []
    for try await event in try await engine.history(
      read, by: caller(for: Gps_V1_Control.Method.ReadHistory.descriptor, context))
    {
      events.append(event)
    }
    let more = events.count > limit
    if more { events.removeLast() }
    return (events, more)
  }

  func runEvents(_ request: Request, _ context: WebContext) async throws -> Response {
    let id = try context.parameters.require("id")
    let query = request.uri.queryParameters
    let after = try Self.number(query.get("after"), "after") ?? 0
    let limit = Int(try Self.limit(query.get("limit"), default: 500, maximum: 5000))
    _ = try caller(for: Gps_V1_Control.Method.GetRun.descriptor, context)
    let run = try await engine.runInfo(.with { $0.runID = id })
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
  ) async throws -> Response {
    let query = request.uri.queryParameters
    let lastID = try Self.number(request.headers[HTTPField.Name("Last-Event-ID")!], "Last-Event-ID")
    let after = try lastID ?? Self.number(query.get("after"), "after") ?? 0
    let read = Gps_V1_ReadHistoryRequest.with {
      $0.fromSequence = after + 1
      $0.runID = run
      $0.follow = true
    }
    let history: HistoryEvents
    do {
      history = try await engine.history(read, by: caller(for: method, context))
    } catch let error as RPCError where error.code == .resourceExhausted {
      // A stream lasts: beyond the server's or the caller's share of them, 503 and when to retry
      // (an EventSource retries by itself).
      throw WebError(status: .serviceUnavailable, code: "RESOURCE_EXHAUSTED", message: error.message, retryAfter: 5)
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
            for try await event in history { try await events.write(event) }
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

  func runStream(_ request: Request, _ context: WebContext) async throws -> Response {
    let id = try context.parameters.require("id")
    guard let run = try? await engine.run(named: id) else {
      throw WebError.notFound("no run \(JSONValue.quoted(id, limit: 100))")
    }
    return try await sse(request, context, run: run.id.description, method: Gps_V1_Control.Method.WatchRun.descriptor)
  }

  func historyStream(_ request: Request, _ context: WebContext) async throws -> Response {
    try await sse(
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
}
