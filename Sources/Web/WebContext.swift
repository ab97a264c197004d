import Control
import Foundation
import GPSModel
import HTTPTypes
import Hummingbird
import NIOCore

/// A request's context: who is at the other end, once ``AccessMiddleware`` has said.
struct WebContext: RequestContext {
  var coreContext: CoreRequestContextStorage
  /// The peer as the control API names one, e.g. `ipv4:127.0.0.1:53412`.
  let remotePeer: String
  /// The authenticated caller (a token's name), or nil on a server without tokens.
  var tokenName: String?
  /// What the caller may do: the token's roles; without tokens (loopback), all of them.
  var roles: Role = .all

  init(source: ApplicationRequestContextSource) {
    coreContext = .init(source: source)
    let address = source.channel.remoteAddress
    remotePeer =
      switch address {
      case .v4?: "ipv4:\(address?.ipAddress ?? ""):\(address?.port ?? 0)"
      case .v6?: "ipv6:[\(address?.ipAddress ?? "")]:\(address?.port ?? 0)"
      default: "unknown"
      }
  }

  /// Request bodies (an enqueue's parameters) up to the queue's own limit and some beyond, so the
  /// queue refuses them with its own message.
  var maxUploadSize: Int { 5 << 20 }
}

/// Authentication and the CSRF defence, before any route.
///
/// - With tokens, a request carries one as `Authorization: Bearer TOKEN` (the API) or in the
///   `gps_token` cookie that `/login` sets (the pages); without one, an API call is answered 401
///   and a page redirects to `/login`.
/// - A request that changes something (POST) must come from this site: a browser's `Origin`
///   (or `Sec-Fetch-Site`) must say so, and API calls must be JSON, which a cross-site form cannot
///   send. Tools such as curl send neither header and are not browsers a page could drive.
struct AccessMiddleware: RouterMiddleware {
  typealias Context = WebContext
  let tokens: AccessTokens
  let hosts: HostCheck
  let secure: Bool
  /// The leader's web UI, named when a standby refuses a write (nil: none known).
  var leaderWeb: @Sendable () -> String? = { nil }

  static let cookie = "gps_token"

  func handle(
    _ request: Request, context: WebContext, next: (Request, WebContext) async throws -> Response
  ) async throws -> Response {
    var context = context
    if let refusal = hosts.refusal(authority: request.head.authority, secure: secure) {
      return WebError(status: .misdirectedRequest, code: "PERMISSION_DENIED", message: refusal).response(for: request)
    }
    if let allowed = Self.allowedMethods(request.uri.path), !allowed.contains(request.method),
      !(request.method == .head && allowed.contains(.get))
    {
      var response = WebError(
        status: .methodNotAllowed, code: "UNIMPLEMENTED",
        message:
          "\(request.method.rawValue.prefix(20)) is not a method of \(request.uri.path.prefix(200)); use \(allowed.map(\.rawValue).sorted().joined(separator: " or "))"
      ).response(for: request)
      response.headers[.allow] = allowed.map(\.rawValue).sorted().joined(separator: ", ")
      return response
    }
    if request.method == .post || request.method == .put || request.method == .delete || request.method == .patch {
      if let refusal = Self.crossSite(request) { return WebError.forbidden(refusal).response(for: request) }
    }
    let path = request.uri.path
    let open =
      ["/healthz", "/readyz", "/login", "/logout", "/favicon.ico"].contains(path) || path.hasPrefix("/static/")
    if !tokens.isEmpty && !open {
      guard let caller = token(of: request).flatMap(tokens.caller(of:)) else {
        if path.hasPrefix("/api/") || path == "/metrics" {
          return WebError(
            status: .unauthorized, code: "UNAUTHENTICATED",
            message: token(of: request) == nil
              ? "this server needs a token: send it as Authorization: Bearer TOKEN"
              : "the token given is not one this server knows"
          ).response(for: request)
        }
        let target = request.uri.string
        var response = Response(status: .seeOther)
        response.headers[.location] =
          "/login?next=" + (target.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "/")
        return response
      }
      context.tokenName = caller.name
      context.roles = caller.roles
    }
    do {
      return try await next(request, context)
    } catch {
      // No such route, a body too large, …: answered in the API's or the pages' own form.
      return WebError.from(error, leaderWeb: leaderWeb()).response(for: request)
    }
  }

  func token(of request: Request) -> String? {
    if let header = request.headers[.authorization] { return AccessTokens.bearerToken(header) }
    return request.cookies[Self.cookie]?.value
  }

  /// The API's routes and their methods: any other method is answered 405, before anything else.
  static let routes: [(pattern: [String], methods: Set<HTTPRequest.Method>)] = [
    (["api", "runs"], [.get, .post]), (["api", "runs", "*"], [.get]), (["api", "runs", "*", "events"], [.get]),
    (["api", "runs", "*", "stream"], [.get]), (["api", "runs", "*", "cancel"], [.post]),
    (["api", "runs", "*", "retry"], [.post]), (["api", "deployments"], [.get]),
    (["api", "deployments", "*", "*"], [.get]), (["api", "history"], [.get]), (["api", "history", "stream"], [.get]),
    (["api", "history", "verify"], [.post]), (["api", "openapi.json"], [.get]), (["api", "cluster"], [.get]),
  ]

  static func allowedMethods(_ path: String) -> Set<HTTPRequest.Method>? {
    let segments = path.split(separator: "/").map(String.init)
    guard segments.first == "api" else { return nil }
    // An exact segment wins over a wildcard (`history/stream` is not `runs/{id}`-like).
    let matches = routes.filter { route in
      route.pattern.count == segments.count
        && zip(route.pattern, segments).allSatisfy { $0 == "*" || $0 == $1 }
    }
    let best = matches.max { a, b in a.pattern.filter { $0 != "*" }.count < b.pattern.filter { $0 != "*" }.count }
    return best?.methods
  }

  /// Why a changing request is refused as cross-site, or nil when it may proceed.
  static func crossSite(_ request: Request) -> String? {
    if let origin = request.headers[.origin] {
      // HTTP/1.1's Host header is the request's authority.
      let host = request.head.authority ?? ""
      guard origin == "http://\(host)" || origin == "https://\(host)" else {
        return "a request from another site (Origin \(origin.prefix(100))) may not change anything here"
      }
    } else if let site = request.headers[HTTPField.Name("Sec-Fetch-Site")!], site != "same-origin", site != "none" {
      return "a request from another site may not change anything here"
    }
    // A form of another site always sends a body of its own type; a request without one (a
    // cancel with no reason) carries nothing a form could forge.
    if request.uri.path.hasPrefix("/api/"), let type = request.headers[.contentType] {
      guard type.hasPrefix("application/json") else {
        return "API requests that change something send JSON (Content-Type: application/json)"
      }
    }
    return nil
  }
}
