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

/// A page of the web UI: server-rendered HTML, with small scripts for what is live or interactive.
struct Page {
  var title: String
  var body: HTML
  /// Data for the page's script, as JSON in a `<script type="application/json">` element.
  var data: JSONValue?

  /// `signOut`: the header has a Sign out button (the server has tokens). `standby`: this server
  /// is a standby of a cluster, and the leader's web UI is at the URL (nil: none known now).
  func response(status: HTTPResponse.Status = .ok, signOut: Bool = false, standby: String?? = nil) -> Response {
    var page = HTML("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">")
    page.raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
    page.element("title", text: "\(title) · GPS")
    page.raw("<link rel=\"stylesheet\" href=\"/static/app.css\"></head><body>")
    page.raw(
      "<header><a class=\"brand\" href=\"/runs\">GPS</a><nav><a href=\"/runs\">Runs</a><a href=\"/deployments\">Deployments</a><a href=\"/history\">History</a></nav>"
    )
    if signOut {
      page.raw(
        "<form method=\"post\" action=\"/logout\" class=\"sign-out\"><button type=\"submit\">Sign out</button></form>")
    }
    page.raw("</header>")
    if let standby {
      // Said on every page: what it shows is the leader's, and changes are the leader's to make.
      page.raw("<p class=\"standby\" role=\"status\">This server is a standby: it shows what the leader committed, ")
      if let leader = standby, leader.hasPrefix("http://") || leader.hasPrefix("https://") {
        page.add("and changes are made on the leader, ")
        page.link(leader, leader)
        page.add(".")
      } else {
        page.add("and no server leads the cluster right now: changes wait until one does.")
      }
      page.raw("</p>")
    }
    page.raw("<main id=\"main\">")
    page.add(body)
    page.raw("</main>")
    if let data {
      // JSON inside a script element: `<` is escaped so no value can close the element.
      page.raw("<script type=\"application/json\" id=\"page-data\">")
      page.raw(data.text.replacingOccurrences(of: "<", with: "\\u003c"))
      page.raw("</script>")
    }
    page.raw("<script src=\"/static/app.js\"></script></body></html>")
    return Response(
      status: status,
      headers: [
        .contentType: "text/html; charset=utf-8", .cacheControl: "no-store",
        // Only this site's own script and style; no inline script can run, whatever a value holds.
        HTTPField.Name("Content-Security-Policy")!:
          "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        HTTPField.Name("X-Content-Type-Options")!: "nosniff",
      ],
      body: .init(byteBuffer: ByteBuffer(string: page.text)))
  }

  static func error(_ error: WebError) -> Page {
    var body = HTML()
    body.element("h1", text: "\(error.status.code) \(error.status.reasonPhrase)")
    body.element("p", [("class", "error")], text: error.message)
    for problem in error.problems {
      body.element("p", [("class", "problem")], text: "\(problem.path): \(problem.message)")
    }
    return Page(title: "Error", body: body)
  }
}

/// The pages: runs, a run, deployments, a deployment with its run form, and the history.
struct Pages: Sendable {
  let site: Site

  func addRoutes(to router: Router<WebContext>) {
    router.get("/") { _, _ in
      var response = Response(status: .seeOther)
      response.headers[.location] = "/runs"
      return response
    }
    router.get("runs") { request, context in try await self.page(request) { try await self.runs(request, context) } }
    router.get("runs/:id") { request, context in try await self.page(request) { try await self.run(request, context) } }
    router.get("deployments") { request, context in
      try await self.page(request) { try await self.deployments(context) }
    }
    router.get("deployments/:flow/:name") { request, context in
      try await self.page(request) { try await self.deployment(request, context) }
    }
    router.get("history") { request, context in
      try await self.page(request) { try await self.history(request, context) }
    }
    router.get("login") { request, _ in self.login(request, problem: nil).response() }
    router.post("login") { request, _ in try await self.signIn(request) }
    router.post("logout") { _, _ in self.signOut() }
    router.get("static/app.js") { _, _ in
      Response.text(Assets.script, type: "text/javascript; charset=utf-8")
    }
    router.get("favicon.ico") { _, _ in Response(status: .noContent) }
    router.get("static/app.css") { _, _ in Response.text(Assets.style, type: "text/css; charset=utf-8") }
  }

  func page(_ request: Request, _ body: () async throws -> Page) async throws -> Response {
    let leaderWeb = site.engine.cluster?.leaderWebURL.withLock { $0 }
    let standby: String?? = site.engine.cluster != nil && site.queue.isStandby ? .some(leaderWeb) : .none
    do {
      return try await body().response(signOut: !site.tokens.isEmpty, standby: standby)
    } catch {
      let failure = WebError.from(error, leaderWeb: leaderWeb)
      return Page.error(failure).response(status: failure.status, signOut: !site.tokens.isEmpty, standby: standby)
    }
  }

  // MARK: History

  func history(_ request: Request, _ context: WebContext) async throws -> Page {
    let query = request.uri.queryParameters
    let after = try Site.number(query.get("after"), "after") ?? 0
    let fromTime = try Site.time(query.get("from_time"), "from_time")
    let run = query.get("run") ?? ""
    let (events, more) = try await site.events(from: after + 1, fromTime: fromTime, run: run, limit: 500, context)
    let types = site.resultTypes
    var body = HTML("<h1>History</h1>")
    body.raw("<form class=\"filters\" method=\"get\" action=\"/history\"><label>Run ")
    body.open("input", [("name", "run"), ("value", run), ("placeholder", "run id or prefix")])
    body.raw("</label><label>After sequence ")
    body.open("input", [("name", "after"), ("value", after == 0 ? "" : String(after)), ("inputmode", "numeric")])
    body.raw("</label><label>From ")
    body.open("input", [("name", "from_time"), ("type", "datetime-local"), ("value", query.get("from_time") ?? "")])
    body.raw("</label><button type=\"submit\">Show</button></form>")
    body.raw(
      "<div class=\"actions\"><button type=\"button\" id=\"verify\">Verify the log</button><span id=\"verify-result\" role=\"status\"></span></div>"
    )
    body.add(Self.eventTable(events, types: types, id: "history", runs: true))
    if more, let last = events.last {
      var next = query.filter { $0.key != "after" }.map { "\(HTML.url(String($0.key)))=\(HTML.url(String($0.value)))" }
      next.append("after=\(last.sequence)")
      body.link("/history?" + next.joined(separator: "&"), "Later events →", [("class", "next")])
    }
    return Page(
      title: "History", body: body,
      data: .object([
        .init("page", .string("history")), .init("run", .string(run)), .init("live", .bool(!more)),
        .init("after", .string(String(events.last?.sequence ?? after))),
      ]))
  }

  // MARK: Sign-in

  func login(_ request: Request, problem: String?) -> Page {
    var body = HTML("<h1>Sign in</h1>")
    body.raw("<form method=\"post\" action=\"/login\" class=\"login\">")
    body.open(
      "input", [("type", "hidden"), ("name", "next"), ("value", request.uri.queryParameters.get("next") ?? "/runs")])
    body.raw("<label>Token <input type=\"password\" name=\"token\" autocomplete=\"current-password\"></label>")
    body.raw("<button type=\"submit\">Sign in</button></form>")
    if let problem { body.element("p", [("class", "error")], text: problem) }
    return Page(title: "Sign in", body: body)
  }

  /// Forgets the sign-in: the cookie is expired, and the browser is sent to sign in again.
  func signOut() -> Response {
    var response = Response(status: .seeOther)
    response.headers[.location] = "/login"
    response.setCookie(
      Cookie(
        name: AccessMiddleware.cookie, value: "", maxAge: 0, path: "/", secure: site.secure, httpOnly: true,
        sameSite: .strict))
    return response
  }

  /// `next` when it is a path of this site, else `/`. Browsers drop tabs and newlines from URLs and
  /// read `\` as `/`, so `/\t/evil.example` and `/\\evil.example` are another site (`//…`): a path
  /// with any control character, a backslash or a leading `//` is not followed.
  static func sameSitePath(_ next: String) -> String {
    guard next.hasPrefix("/"), !next.hasPrefix("//"), next.utf8.count <= 2048,
      !next.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0 == "\\" })
    else { return "/" }
    return next
  }

  func signIn(_ request: Request) async throws -> Response {
    var request = request
    let body = String(buffer: try await request.collectBody(limit: 16 << 10))
    var fields: [String: String] = [:]
    for pair in body.split(separator: "&") {
      let parts = pair.split(separator: "=", maxSplits: 1).map {
        $0.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
      }
      if parts.count == 2 { fields[parts[0]] = parts[1] }
    }
    guard let token = fields["token"], site.tokens.name(of: token) != nil else {
      return login(request, problem: "That token is not one this server knows.").response(status: .unauthorized)
    }
    // Only a path of this site: never a redirect elsewhere.
    let next = Self.sameSitePath(fields["next"] ?? "/runs")
    var response = Response(status: .seeOther)
    response.headers[.location] = next
    response.setCookie(
      Cookie(
        name: AccessMiddleware.cookie, value: token, path: "/", secure: site.secure, httpOnly: true, sameSite: .strict))
    return response
  }
}
