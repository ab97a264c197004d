import Foundation
public import GRPCCore
import RPC
import Synchronization

/// Who may call the control API: named tokens, read from a file (never the command line).
///
/// The file holds one `NAME TOKEN` pair per line (`#` starts a comment); a token is at least 16
/// characters. A caller presents its token as `authorization: Bearer TOKEN`, and the name is then
/// who it is in the log: the `enqueued_by` and `requested_by` of its events.
public struct AccessTokens: Sendable {
  /// Token → name.
  let names: [String: String]

  public var isEmpty: Bool { names.isEmpty }

  public init(_ pairs: [(name: String, token: String)] = []) {
    var names: [String: String] = [:]
    for (name, token) in pairs { names[token] = name }
    self.names = names
  }

  /// The token of an `Authorization` header's value: `Bearer TOKEN`, the scheme in any case (RFC
  /// 9110 §11.1) and one or more spaces after it; nil for any other scheme.
  public static func bearerToken(_ header: String) -> String? {
    guard header.utf8.count > 7, header.prefix(6).lowercased() == "bearer", header.dropFirst(6).first == " " else {
      return nil
    }
    let token = header.dropFirst(7).drop(while: { $0 == " " })
    return token.isEmpty ? nil : String(token)
  }

  /// Reads a tokens file; the error names the file and the line.
  public static func load(file path: String) throws -> AccessTokens {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
      throw ControlError("cannot read the tokens file \(path)")
    }
    var pairs: [(name: String, token: String)] = []
    for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let content = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
      let words = content.split(whereSeparator: { $0 == " " || $0 == "\t" })
      if words.isEmpty { continue }
      guard words.count == 2 else {
        throw ControlError("\(path) line \(index + 1): expected NAME TOKEN")
      }
      guard words[1].count >= 16 else {
        throw ControlError("\(path) line \(index + 1): the token of \(words[0]) is shorter than 16 characters")
      }
      pairs.append((String(words[0]), String(words[1])))
    }
    guard !pairs.isEmpty else { throw ControlError("the tokens file \(path) names no token") }
    return AccessTokens(pairs)
  }

  /// The name of `token`, comparing in constant time so that timing tells nothing of the tokens.
  package func name(of token: String) -> String? {
    let given = Array(token.utf8)
    var found: String?
    for (candidate, name) in names {
      let bytes = Array(candidate.utf8)
      var difference = UInt8(bytes.count == given.count ? 0 : 1)
      for index in 0..<bytes.count { difference |= bytes[index] ^ (index < given.count ? given[index] : 0) }
      if difference == 0 { found = name }
    }
    return found
  }
}

/// A control API error the CLI shows as is.
package struct ControlError: Error, CustomStringConvertible {
  package var message: String
  package var description: String { message }
  package init(_ message: String) { self.message = message }
}

/// The caller of the control API call being served: the token's name, or, on loopback without
/// tokens, the local user whose process holds the other end of the connection.
package enum Principal {
  @TaskLocal package static var source: Source?

  /// Who is calling, or nil outside a control API call. Looked up on first use only: most calls
  /// (claims, heartbeats, reports) never ask.
  package static var current: String? { source?.name }

  package final class Source: Sendable {
    private let resolved: Mutex<String?>
    private let lookup: @Sendable () -> String

    package init(name: String) {
      resolved = Mutex(name)
      lookup = { name }
    }

    package init(lookup: @escaping @Sendable () -> String) {
      resolved = Mutex(nil)
      self.lookup = lookup
    }

    var name: String {
      if let name = resolved.withLock({ $0 }) { return name }
      let name = lookup()
      resolved.withLock { $0 = name }
      return name
    }
  }
}

/// Checks every control API call's token and tells the handlers who the caller is.
package struct AccessInterceptor: ServerInterceptor {
  let tokens: AccessTokens
  let localPort: @Sendable () -> Int?

  package init(tokens: AccessTokens, localPort: @escaping @Sendable () -> Int?) {
    self.tokens = tokens
    self.localPort = localPort
  }

  package func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let principal: Principal.Source
    if tokens.isEmpty {
      let peer = context.remotePeer
      let port = localPort()
      principal = Principal.Source { LoopbackPeer.user(remotePeer: peer, localPort: port) ?? peer }
    } else {
      let header = request.metadata[stringValues: "authorization"].first(where: { _ in true }) ?? ""
      guard let token = AccessTokens.bearerToken(header), let name = tokens.name(of: token) else {
        throw RPCError(
          code: .unauthenticated,
          message: header.isEmpty
            ? "this server needs a token: give it in GPS_TOKEN or a file named by --token-file"
            : "the token given is not one this server knows; check GPS_TOKEN or --token-file")
      }
      principal = Principal.Source(name: name)
    }
    var response = try await Principal.$source.withValue(principal) { try await next(request, context) }
    if case .success(var contents) = response.accepted {
      let producer = contents.producer
      contents.producer = { writer in try await Principal.$source.withValue(principal) { try await producer(writer) } }
      response = StreamingServerResponse(accepted: .success(contents))
    }
    return response
  }
}

/// Sends the token with every call of a client.
package struct TokenInterceptor: ClientInterceptor {
  let token: String

  package init(token: String) { self.token = token }

  package func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingClientRequest<Input>,
    context: ClientContext,
    next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
  ) async throws -> StreamingClientResponse<Output> {
    var request = request
    request.metadata.replaceOrAddString("Bearer \(token)", forKey: "authorization")
    return try await next(request, context)
  }
}

/// The local user at the other end of a loopback TCP connection, from the kernel's socket table
/// (`/proc/net/tcp`, `tcp6`): the audit identity when no tokens are configured.
package enum LoopbackPeer {
  package static func user(remotePeer: String, localPort: Int?) -> String? {
    // "ipv4:127.0.0.1:54321" or "ipv6:[::1]:54321"
    guard remotePeer.hasPrefix("ipv4:127.") || remotePeer.hasPrefix("ipv6:[::1]"),
      let colon = remotePeer.lastIndex(of: ":"), let peerPort = Int(remotePeer[remotePeer.index(after: colon)...]),
      let localPort
    else { return nil }
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
      guard let text = readWhole(table) else { continue }
      for line in text.split(separator: "\n").dropFirst() {
        let fields = line.split(separator: " ")
        // sl local_address rem_address st tx:rx tr:tm retrnsmt uid …: the client's socket has
        // the peer's port as its local port and the server's as its remote one.
        guard fields.count > 7, port(fields[1]) == peerPort, port(fields[2]) == localPort, let uid = UInt32(fields[7])
        else { continue }
        guard let entry = getpwuid(uid), let name = entry.pointee.pw_name else { return "uid \(uid)" }
        return String(cString: name) + "@" + ProcessInfo.processInfo.hostName
      }
    }
    return nil
  }

  /// A /proc file read to its end: its size says 0, and a single read returns one page of it.
  static func readWhole(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
      let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if count < 0, errno == EINTR { continue }
      guard count > 0 else { break }
      bytes.append(contentsOf: buffer[..<count])
    }
    return String(decoding: bytes, as: UTF8.self)
  }

  static func port(_ address: Substring) -> Int? {
    guard let colon = address.lastIndex(of: ":") else { return nil }
    return Int(address[address.index(after: colon)...], radix: 16)
  }
}
