import Foundation
package import GRPCCore
import RPC
import Synchronization

/// What a caller may do. Every role may read (runs, deployments, the history); `operator` also
/// enqueues, cancels and retries; `worker` registers deployments and executes their runs (claim,
/// heartbeat, report) — only deployments its principal registered first; `admin` may do all of it
/// for any deployment, and archive the log.
package struct Role: OptionSet, Sendable, Hashable, CustomStringConvertible {
  package let rawValue: UInt8
  package init(rawValue: UInt8) { self.rawValue = rawValue }

  package static let reader = Role(rawValue: 1)
  package static let `operator` = Role(rawValue: 2)
  package static let worker = Role(rawValue: 4)
  package static let admin = Role(rawValue: 8)
  package static let all: Role = [.reader, .operator, .worker, .admin]

  package static let names: [(String, Role)] = [
    ("admin", .admin), ("operator", .operator), ("worker", .worker), ("reader", .reader),
  ]

  package var description: String { Self.names.filter { contains($0.1) }.map(\.0).joined(separator: ",") }

  /// Whether a caller with these roles may do what `needed` allows.
  package func allows(_ needed: Role) -> Bool { contains(.admin) || needed == .reader || contains(needed) }

  /// The role a control API method needs.
  package static func needed(for method: MethodDescriptor) -> Role {
    switch method.method {
    case "Enqueue", "EnqueueStream", "CancelRun", "RetryRun": .operator
    case "RegisterDeployments", "Claim", "Heartbeat", "HeartbeatMany", "Report", "WatchWork": .worker
    case "ArchiveLog", "HandOverDeployment": .admin
    default: .reader
    }
  }

  /// PERMISSION_DENIED for `method`, naming the role it needs.
  package static func denial(of method: MethodDescriptor, to name: String, with roles: Role) -> RPCError {
    let needed = Self.needed(for: method)
    return RPCError(
      code: .permissionDenied,
      message:
        "\(name) (roles: \(roles)) may not call \(method.method): it needs the \(needed) role (or admin); give the token that role in the tokens file"
    )
  }
}

/// Who may call the control API: named tokens with their roles, read from a file (never the
/// command line).
///
/// The file holds one `NAME TOKEN ROLE[,ROLE…]` line per caller (`#` starts a comment); a token
/// is at least 16 characters, and the roles are `admin`, `operator`, `worker` and `reader`
/// (``Role``). A caller presents its token as `authorization: Bearer TOKEN` (over HTTP too), and
/// the name is then who it is in the log: the `enqueued_by`, `requested_by`, `registered_by`,
/// `archived_by` and claiming principal of its events.
public struct AccessTokens: Sendable {
  /// Token → name and roles.
  let entries: [String: (name: String, roles: Role)]

  public var isEmpty: Bool { entries.isEmpty }

  /// The callers' names.
  package var names: Set<String> { Set(entries.values.map(\.name)) }

  package init(_ lines: [(name: String, token: String, roles: Role)] = []) {
    var entries: [String: (name: String, roles: Role)] = [:]
    for line in lines { entries[line.token] = (line.name, line.roles) }
    self.entries = entries
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

  /// Reads a tokens file; the error names the file and the line. `warn` hears what is allowed
  /// but unwise (a file others may read).
  public static func load(file path: String, warn: (String) -> Void = { _ in }) throws -> AccessTokens {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
      throw ControlError("cannot read the tokens file \(path)")
    }
    var lines: [(name: String, token: String, roles: Role)] = []
    var names: [String: String] = [:]
    for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let content = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
      let words = content.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
      if words.isEmpty { continue }
      let at = "\(path) line \(index + 1)"
      guard words.count == 3 else {
        throw ControlError(
          words.count == 2
            ? "\(at): \(words[0]) has no roles; write NAME TOKEN ROLE[,ROLE…], the roles among admin, operator, worker, reader (e.g. \(words[0]) TOKEN operator)"
            : "\(at): expected NAME TOKEN ROLE[,ROLE…] (roles: admin, operator, worker, reader)")
      }
      guard words[1].count >= 16 else {
        throw ControlError("\(at): the token of \(words[0]) is shorter than 16 characters")
      }
      var roles: Role = []
      for word in words[2].split(separator: ",", omittingEmptySubsequences: false) {
        guard let role = Role.names.first(where: { $0.0 == word.lowercased() })?.1 else {
          throw ControlError(
            "\(at): \(word.prefix(40)) is not a role; the roles are admin, operator, worker, reader (comma-separated)")
        }
        roles.insert(role)
      }
      let token = String(words[1])
      if let other = names[token] {
        throw ControlError(
          "\(at): \(words[0]) has the token of \(other); each name needs its own token, or the log could not tell them apart"
        )
      }
      names[token] = String(words[0])
      lines.append((String(words[0]), token, roles))
    }
    guard !lines.isEmpty else { throw ControlError("the tokens file \(path) names no token") }
    var status = stat()
    if stat(path, &status) == 0, status.st_mode & 0o077 != 0 {
      warn(
        "the tokens file \(path) may be read by others (mode \(String(status.st_mode & 0o777, radix: 8))); chmod 600 it"
      )
    }
    return AccessTokens(lines)
  }

  /// The name of `token`, comparing in constant time so that timing tells nothing of the tokens.
  package func name(of token: String) -> String? { caller(of: token)?.name }

  /// The name and roles of `token`, comparing in constant time.
  package func caller(of token: String) -> (name: String, roles: Role)? {
    let given = Array(token.utf8)
    var found: (name: String, roles: Role)?
    for (candidate, entry) in entries {
      let bytes = Array(candidate.utf8)
      var difference = UInt8(bytes.count == given.count ? 0 : 1)
      for index in 0..<bytes.count { difference |= bytes[index] ^ (index < given.count ? given[index] : 0) }
      if difference == 0 { found = entry }
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

/// Who calls the engine: the principal a door authenticated (a token's name, or, on loopback
/// without tokens, the local user whose process holds the other end of the connection; never what
/// the request says of itself) and the roles it holds. The name is looked up on first use only:
/// most calls (claims, heartbeats, reports) never ask.
package final class Caller: Sendable {
  private let resolved: Mutex<String?>
  private let lookup: @Sendable () -> String
  /// What the caller may do: a token's roles; the local user on loopback without tokens has all.
  package let roles: Role

  package init(name: String, roles: Role = .all) {
    resolved = Mutex(name)
    lookup = { name }
    self.roles = roles
  }

  package init(lookup: @escaping @Sendable () -> String) {
    resolved = Mutex(nil)
    self.lookup = lookup
    roles = .all
  }

  package var name: String {
    if let name = resolved.withLock({ $0 }) { return name }
    let name = lookup()
    resolved.withLock { $0 = name }
    return name
  }

  /// Whether the caller may act on any deployment (admin), not only those it registered first.
  package var isAdmin: Bool { roles.contains(.admin) }
}

/// The caller of the control API call being served, as the access interceptor authenticated it.
package enum Principal {
  @TaskLocal package static var source: Caller?

  /// Who calls: the authenticated caller, else (no interceptor, as in tests) the connection's
  /// peer with every role.
  package static func caller(_ context: ServerContext) -> Caller {
    source ?? Caller(name: context.remotePeer)
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
    let principal: Caller
    if tokens.isEmpty {
      let peer = context.remotePeer
      let port = localPort()
      principal = Caller { LoopbackPeer.user(remotePeer: peer, localPort: port) ?? peer }
    } else {
      let header = request.metadata[stringValues: "authorization"].first(where: { _ in true }) ?? ""
      guard let token = AccessTokens.bearerToken(header), let caller = tokens.caller(of: token) else {
        throw RPCError(
          code: .unauthenticated,
          message: header.isEmpty
            ? "this server needs a token: give it in GPS_TOKEN or a file named by --token-file"
            : "the token given is not one this server knows; check GPS_TOKEN or --token-file")
      }
      // Every role is checked here, where the call enters, before any handler runs.
      guard caller.roles.allows(Role.needed(for: context.descriptor)) else {
        throw Role.denial(of: context.descriptor, to: caller.name, with: caller.roles)
      }
      principal = Caller(name: caller.name, roles: caller.roles)
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

/// The local user at the other end of a loopback TCP connection, from the kernel's socket table
/// (`/proc/net/tcp`, `tcp6`): the audit identity when no tokens are configured.
package enum LoopbackPeer {
  package static func user(remotePeer: String, localPort: Int?) -> String? {
    // "ipv4:127.0.0.1:54321" or "ipv6:[::1]:54321"
    guard remotePeer.hasPrefix("ipv4:127.") || remotePeer.hasPrefix("ipv6:[::1]"),
      let colon = remotePeer.lastIndex(of: ":"), let peerPort = Int(remotePeer[remotePeer.index(after: colon)...]),
      let localPort
    else { return nil }
    // The kernel prints the tables a page at a time: a socket that moves between buckets while
    // they are read (other connections opening and closing) can be missed. An open connection is
    // in them, so a miss is looked for again, a few times.
    for _ in 0..<4 {
      if let found = lookUp(peerPort: peerPort, localPort: localPort) { return found }
    }
    return nil
  }

  static func lookUp(peerPort: Int, localPort: Int) -> String? {
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
