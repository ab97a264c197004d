public import GRPCNIOTransportHTTP2

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A `HOST:PORT` pair as users type it: `127.0.0.1:50051`, `[::1]:50051`, `localhost:50051`.
public struct ServiceAddress: Sendable, Hashable, CustomStringConvertible {
  public var host: String
  public var port: Int

  public init(host: String, port: Int) {
    self.host = host
    self.port = port
  }

  /// Parses `HOST:PORT` (IPv6 hosts in brackets); `what` names the flag in error messages.
  public init(parsing text: String, what: String) throws(ServiceAddressError) {
    let hostPart: Substring
    let portPart: Substring
    if text.hasPrefix("[") {
      guard let close = text.firstIndex(of: "]"), text[close...].hasPrefix("]:") else {
        throw ServiceAddressError(message: "\(what) '\(text)': expected [IPV6]:PORT, e.g. [::1]:50051")
      }
      hostPart = text[text.index(after: text.startIndex)..<close]
      portPart = text[text.index(close, offsetBy: 2)...]
    } else {
      guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else {
        throw ServiceAddressError(message: "\(what) '\(text)': expected HOST:PORT, e.g. 127.0.0.1:50051")
      }
      hostPart = text[..<colon]
      portPart = text[text.index(after: colon)...]
    }
    guard !hostPart.isEmpty else {
      throw ServiceAddressError(message: "\(what) '\(text)': the host is empty; expected HOST:PORT")
    }
    guard let port = Int(portPart), (1...65535).contains(port) else {
      throw ServiceAddressError(message: "\(what) '\(text)': the port must be a number from 1 to 65535")
    }
    self.init(host: String(hostPart), port: port)
  }

  public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

  /// The address a server binds: IPv4 or IPv6 literals, and `localhost` as 127.0.0.1.
  public func bindAddress() throws(ServiceAddressError) -> GRPCNIOTransportCore.SocketAddress {
    if host == "localhost" { return .ipv4(host: "127.0.0.1", port: port) }
    if Self.isIPv4(host) { return .ipv4(host: host, port: port) }
    if Self.isIPv6(host) { return .ipv6(host: host, port: port) }
    throw ServiceAddressError(message: "host '\(host)' is not an IP address; give one such as 127.0.0.1 or ::1")
  }

  /// The target a client connects to; names are resolved by DNS.
  public var resolvableTarget: any ResolvableTarget {
    if Self.isIPv4(host) { return ResolvableTargets.IPv4.ipv4(address: host, port: port) }
    if Self.isIPv6(host) { return ResolvableTargets.IPv6.ipv6(address: host, port: port) }
    return ResolvableTargets.DNS.dns(host: host, port: port)
  }

  /// The endpoint a server is listening on, as printed for users and other programs.
  public init?(_ address: GRPCNIOTransportCore.SocketAddress) {
    if let ipv4 = address.ipv4 {
      self.init(host: ipv4.host, port: ipv4.port)
    } else if let ipv6 = address.ipv6 {
      self.init(host: ipv6.host, port: ipv6.port)
    } else {
      return nil
    }
  }

  static func isIPv4(_ host: String) -> Bool {
    var address = in_addr()
    return inet_pton(AF_INET, host, &address) == 1
  }

  static func isIPv6(_ host: String) -> Bool {
    var address = in6_addr()
    return inet_pton(AF_INET6, host, &address) == 1
  }
}

/// A malformed address; the message names the flag and the expected form.
extension ServiceAddress {
  /// Whether `host` names this machine only (127.0.0.0/8, ::1, localhost).
  public static func isLoopback(_ host: String) -> Bool {
    host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
  }
}

/// An address that does not parse, with what was wrong and what to give.
public struct ServiceAddressError: Error, Sendable, CustomStringConvertible {
  public var message: String
  public var description: String { message }
}
