import Control
import Flows
import Foundation
import GPSModel
import GRPCCore
import HTTPTypes
import Hummingbird
import NIOCore
import Queue
import RPC

/// An error answer: JSON `{"error": {"code", "message", "problems": [{"path", "message"}]}}` for
/// the API, the same as a page for the pages. Messages that echo input are bounded.
struct WebError: Error {
  var status: HTTPResponse.Status
  /// A gRPC status name (`INVALID_ARGUMENT`, `NOT_FOUND`, …): the control API's codes.
  var code: String
  var message: String
  /// For invalid parameters: each problem with the path of its field.
  var problems: [(path: String, message: String)] = []
  /// Seconds after which the request may succeed (`Retry-After`), for a 503.
  var retryAfter: Int?
  /// A standby's refusal of a write: the leader's web UI, where it goes instead (`leader_url`).
  var leaderURL: String?

  static func forbidden(_ message: String) -> WebError {
    WebError(status: .forbidden, code: "PERMISSION_DENIED", message: message)
  }

  static func badRequest(_ message: String) -> WebError {
    WebError(status: .badRequest, code: "INVALID_ARGUMENT", message: message)
  }

  static func notFound(_ message: String) -> WebError {
    WebError(status: .notFound, code: "NOT_FOUND", message: message)
  }

  init(
    status: HTTPResponse.Status, code: String, message: String, problems: [(path: String, message: String)] = [],
    retryAfter: Int? = nil, leaderURL: String? = nil
  ) {
    self.status = status
    self.code = code
    self.message = String(message.prefix(2000))
    self.problems = problems
    self.retryAfter = retryAfter
    self.leaderURL = leaderURL
  }

  init(_ error: RPCError) {
    let status: HTTPResponse.Status =
      switch error.code {
      case .invalidArgument, .outOfRange: .badRequest
      case .notFound: .notFound
      case .alreadyExists, .aborted: .conflict
      case .failedPrecondition: .conflict
      case .permissionDenied: .forbidden
      case .unauthenticated: .unauthorized
      case .resourceExhausted: .contentTooLarge
      case .unavailable: .serviceUnavailable
      case .deadlineExceeded: .gatewayTimeout
      default: .internalServerError
      }
    self.init(status: status, code: error.code.canonicalName, message: error.message)
  }

  init(_ error: FlowsError) {
    self.init(RPCError(error))
    if error.code == .invalidParameter {
      problems = error.problems.map(Self.split)
    }
  }

  /// `data_info.dataset: expected a string, got the number 5` as its path and its message.
  static func split(_ problem: String) -> (path: String, message: String) {
    guard let colon = problem.range(of: ": ") else { return ("", problem) }
    let path = problem[..<colon.lowerBound]
    // A path has no spaces; a message without one ("unknown deployment") is all message.
    guard !path.contains(" ") else { return ("", problem) }
    return (String(path), String(problem[colon.upperBound...]))
  }

  /// Any error from the queue, the control API or a handler, as an answer. `leaderWeb`: the
  /// leader's web UI, named in a standby's refusal of a write.
  static func from(_ error: any Error, leaderWeb: String? = nil) -> WebError {
    switch error {
    case let error as WebError: error
    case let error as QueueError where error.code == .notLeader:
      WebError(
        status: .serviceUnavailable, code: "UNAVAILABLE",
        message: leaderWeb.map {
          "this server is a standby (it answers reads); writes go to the leader, whose web UI is at \($0)"
        } ?? error.message, retryAfter: 1, leaderURL: leaderWeb)
    case let error as RPCError: WebError(error)
    case let error as FlowsError: WebError(error)
    case let error as QueueError: WebError(RPCError(error))
    case is NIOTooManyBytesError:
      WebError(
        status: .contentTooLarge, code: "RESOURCE_EXHAUSTED",
        message: "the request's body is larger than this route accepts; nothing was done")
    case let error as HTTPError:
      WebError(
        status: error.status, code: error.status.code == 404 ? "NOT_FOUND" : "INVALID_ARGUMENT",
        message: error.body ?? error.status.reasonPhrase)
    default: WebError(status: .internalServerError, code: "INTERNAL", message: "\(error)")
    }
  }

  var json: JSONValue {
    var members: [JSONValue.Member] = [.init("code", .string(code)), .init("message", .string(message))]
    if let leaderURL { members.append(.init("leader_url", .string(leaderURL))) }
    if !problems.isEmpty {
      members.append(
        .init(
          "problems",
          .array(
            problems.map { .object([.init("path", .string($0.path)), .init("message", .string($0.message))]) })))
    }
    return .object([.init("error", .object(members))])
  }

  func response(for request: Request) -> Response {
    var response: Response
    if request.uri.path.hasPrefix("/api/") || request.uri.path == "/metrics"
      || request.headers[.accept]?.contains("application/json") == true
    {
      response = .json(json, status: status)
    } else {
      response = Page.error(self).response(status: status)
    }
    if let retryAfter { response.headers[.retryAfter] = String(retryAfter) }
    return response
  }
}

extension Request {
  /// The body, at most `limit` bytes: a larger one is answered 413 naming the limit.
  mutating func collectBody(limit: Int) async throws -> ByteBuffer {
    do {
      return try await collectBody(upTo: limit)
    } catch is NIOTooManyBytesError {
      throw WebError(
        status: .contentTooLarge, code: "RESOURCE_EXHAUSTED",
        message: "the request's body is larger than the limit of \(limit) bytes; nothing was done")
    }
  }
}

extension Response {
  static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
    json(text: value.text, status: status)
  }

  static func json(text: String, status: HTTPResponse.Status = .ok) -> Response {
    Response(
      status: status, headers: [.contentType: "application/json; charset=utf-8", .cacheControl: "no-store"],
      body: .init(byteBuffer: ByteBuffer(string: text)))
  }

  static func text(_ text: String, status: HTTPResponse.Status = .ok, type: String = "text/plain; charset=utf-8")
    -> Response
  {
    Response(status: status, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(string: text)))
  }
}
