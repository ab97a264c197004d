public import Foundation

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// Answers redirects with themselves, so a test sees where a redirect would go.
final class StayOnRedirect: NSObject, URLSessionTaskDelegate, Sendable {
  func urlSession(
    _ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
    newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void
  ) {
    completionHandler(nil)
  }
}

/// What a web request answered.
public struct WebAnswer: Sendable {
  public var status: Int
  /// By lowercased name.
  public var headers: [String: String]
  public var body: String
  /// Where the request ended after redirects.
  public var url: URL?

  public init(status: Int, headers: [String: String], body: String, url: URL? = nil) {
    self.status = status
    self.headers = headers
    self.body = body
    self.url = url
  }

  public var json: [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:]
  }
}

/// Sends requests to the web UI and its API: over HTTP (``WebClient``) or straight to its
/// router in-process.
public protocol WebRequester: Sendable {
  /// Sends `body` (as JSON when `json`) with `headers`.
  func send(_ method: String, _ path: String, body: String?, headers: [String: String], json: Bool) async throws
    -> WebAnswer
}

extension WebRequester {
  public func request(
    _ method: String, _ path: String, body: String? = nil, headers: [String: String] = [:], json: Bool = true
  ) async throws -> WebAnswer {
    try await send(method, path, body: body, headers: headers, json: json)
  }

  public func get(_ path: String, headers: [String: String] = [:]) async throws -> WebAnswer {
    try await send("GET", path, body: nil, headers: headers, json: true)
  }

  public func post(_ path: String, _ body: String = "{}", headers: [String: String] = [:]) async throws -> WebAnswer {
    try await send("POST", path, body: body, headers: headers, json: true)
  }
}

/// An HTTP client for the web UI's tests: no cookies kept, no cache.
public struct WebClient: WebRequester {
  public let base: String
  let session: URLSession

  public init(base: String, followRedirects: Bool = true) {
    self.base = base
    let configuration = URLSessionConfiguration.ephemeral
    configuration.httpCookieStorage = nil
    configuration.httpShouldSetCookies = false
    configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
    session = URLSession(
      configuration: configuration, delegate: followRedirects ? nil : StayOnRedirect(), delegateQueue: nil)
  }

  public func send(
    _ method: String, _ path: String, body: String?, headers: [String: String], json: Bool
  ) async throws -> WebAnswer {
    var request = URLRequest(url: URL(string: base + path)!)
    request.httpMethod = method
    request.timeoutInterval = 30
    if let body {
      request.httpBody = Data(body.utf8)
      if json { request.setValue("application/json", forHTTPHeaderField: "Content-Type") }
    }
    for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
    let (data, response) = try await session.data(for: request)
    let http = response as! HTTPURLResponse
    var fields: [String: String] = [:]
    for (name, value) in http.allHeaderFields {
      if let name = name as? String, let value = value as? String { fields[name.lowercased()] = value }
    }
    return WebAnswer(
      status: http.statusCode, headers: fields, body: String(decoding: data, as: UTF8.self), url: http.url)
  }
}

extension GPSProcess {
  /// The web UI's address, from the server's `web UI on URL` line.
  public func webAddress() async throws -> String {
    await waitForOutput { stdout, _ in stdout.contains("web UI on http://") }
    guard let line = stdout.split(separator: "\n").first(where: { $0.hasPrefix("web UI on ") }) else {
      throw ProcessFailure(message: "gps did not report its web address; stderr: \(stderr)")
    }
    return String(line.dropFirst("web UI on ".count))
  }
}
