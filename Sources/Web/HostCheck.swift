import Foundation
import RPC

/// The defence against DNS rebinding: a page of another site whose name the attacker points at
/// this server's address afterwards reaches it as the same origin, and its Origin header then
/// matches its Host. Only the names this server is reached by are accepted: the address it is
/// bound to (and, on loopback, `localhost`), the host of `--public-url`, and, when bound to every
/// interface, any IP address literal or this machine's name; rebinding needs a DNS name of the
/// attacker's, so an IP literal is never one. Others are answered 421 Misdirected Request.
struct HostCheck: Sendable {
  /// The address the web server is bound to.
  let boundHost: String
  /// `--public-url`'s host and port, as a browser's Host header names it.
  let publicAuthority: (host: String, port: Int)?
  let machineName: String
  /// The port the server listens on (known once it runs).
  let localPort: @Sendable () -> Int?

  init(boundHost: String, publicURL: URL?, localPort: @escaping @Sendable () -> Int?) {
    self.boundHost = Self.normalized(boundHost)
    if let publicURL, let host = publicURL.host {
      publicAuthority = (Self.normalized(host), publicURL.port ?? (publicURL.scheme == "https" ? 443 : 80))
    } else {
      publicAuthority = nil
    }
    machineName = Self.normalized(ProcessInfo.processInfo.hostName)
    self.localPort = localPort
  }

  static func normalized(_ host: String) -> String {
    var host = host.lowercased()
    if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    if host.hasSuffix("."), host.count > 1 { host.removeLast() }
    return host
  }

  /// Host and port (nil: none given) of a Host header (`name`, `name:port`, `[v6]:port`); nil when malformed.
  static func split(_ authority: String) -> (host: String, port: Int?)? {
    var host = Substring(authority)
    var port: Int?
    if host.hasPrefix("[") {
      guard let close = host.firstIndex(of: "]") else { return nil }
      let rest = host[host.index(after: close)...]
      host = host[host.index(after: host.startIndex)..<close]
      if !rest.isEmpty {
        guard rest.hasPrefix(":"), let number = Int(rest.dropFirst()), (0...65535).contains(number) else { return nil }
        port = number
      }
    } else if let colon = host.lastIndex(of: ":") {
      guard let number = Int(host[host.index(after: colon)...]), (0...65535).contains(number) else { return nil }
      port = number
      host = host[..<colon]
    }
    guard !host.isEmpty else { return nil }
    return (normalized(String(host)), port)
  }

  static func isIPLiteral(_ host: String) -> Bool {
    var v4 = in_addr()
    var v6 = in6_addr()
    return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
  }

  /// Why a request with this Host header (nil: none, as HTTP/1.0 sends) is refused, or nil.
  func refusal(authority: String?, secure: Bool) -> String? {
    guard let authority else { return nil }
    let shown = authority.prefix(100)
    guard let (host, port) = Self.split(authority) else {
      return "the Host header \(shown) is not a host and port"
    }
    // Behind a proxy the port a browser used is the public URL's, whatever this server listens on.
    if let publicAuthority, publicAuthority.host == host, port == nil || port == publicAuthority.port { return nil }
    if let local = localPort(), (port ?? (secure ? 443 : 80)) == local {
      if host == boundHost { return nil }
      if ServiceAddress.isLoopback(boundHost), ["localhost", "127.0.0.1", "::1"].contains(host) { return nil }
      if ["0.0.0.0", "::"].contains(boundHost), Self.isIPLiteral(host) || host == machineName { return nil }
    }
    return
      "this server does not answer for the host \(shown) (a page of another site whose name was pointed at this address?); open it by the address it serves, or start it with --public-url naming the address you use"
  }
}
