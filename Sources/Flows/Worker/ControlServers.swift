import Foundation
public import GPSModel
public import GRPCCore
public import GRPCNIOTransportHTTP2
public import Logging
public import RPC
import Synchronization

/// The control servers a client may use (`--server A,B`, `GPS_SERVER`, `Worker(servers:)`): the
/// servers of one cluster, of which one leads. Calls go to the one in use; when it cannot be
/// reached, the next is used, and when it is a standby (UNAVAILABLE naming the leader in
/// `gps-leader`), the leader it names, saying so in one line.
public final class ControlServers: Sendable {
  /// The addresses given, in order.
  public let addresses: [ServiceAddress]
  let credentials: ControlCredentials
  let logger: Logger?
  private struct State {
    var current: ServiceAddress
    var clients: [ServiceAddress: GRPCClient<HTTP2ClientTransport.Posix>] = [:]
    var closed = false
  }
  private let state: Mutex<State>
  /// Clients to start (their connections run in the scope of ``withControlServers(_:credentials:logger:_:)``).
  private let starts: AsyncStream<GRPCClient<HTTP2ClientTransport.Posix>>.Continuation

  init(
    _ addresses: [ServiceAddress], credentials: ControlCredentials, logger: Logger?,
    starts: AsyncStream<GRPCClient<HTTP2ClientTransport.Posix>>.Continuation
  ) {
    self.addresses = addresses
    self.credentials = credentials
    self.logger = logger
    self.starts = starts
    state = Mutex(State(current: addresses[0]))
  }

  /// The server in use.
  public var current: ServiceAddress { state.withLock { $0.current } }

  /// A client of the server in use.
  public func client() throws -> ControlClient {
    let (client, new) = try state.withLock { state throws -> (GRPCClient<HTTP2ClientTransport.Posix>, Bool) in
      if let client = state.clients[state.current] { return (client, false) }
      guard !state.closed else { throw RPCError(code: .unavailable, message: "the client is closed") }
      let client = GRPCClient(
        transport: try Self.transport(state.current, credentials: credentials),
        interceptors: credentials.token.map { [TokenInterceptor(token: $0)] } ?? [])
      state.clients[state.current] = client
      return (client, true)
    }
    if new { starts.yield(client) }
    return ControlClient(wrapping: client)
  }

  static func transport(_ address: ServiceAddress, credentials: ControlCredentials) throws
    -> HTTP2ClientTransport.Posix
  {
    let security: HTTP2ClientTransport.Posix.TransportSecurity =
      if let authorities = credentials.certificateAuthorities {
        .tls { $0.trustRoots = .certificates([.file(path: authorities, format: .pem)]) }
      } else {
        .plaintext
      }
    return try .http2NIOPosix(
      target: address.resolvableTarget, transportSecurity: security,
      config: .defaults {
        // A server behind a cut link is noticed within seconds (a scheduler then reconnects).
        $0.connection.keepalive = .init(time: .seconds(10), timeout: .seconds(5), allowWithoutCalls: true)
      })
  }

  /// After a call to `server` answered UNAVAILABLE: use the leader it names, else the next server.
  /// Returns the server now in use, or nil when there is no other to try.
  @discardableResult
  public func unavailable(_ error: RPCError, from server: ServiceAddress) -> ServiceAddress? {
    let named = QueueError.leader(of: error).flatMap { try? ServiceAddress(parsing: $0, what: "gps-leader") }
    let (switched, reason) = state.withLock { state -> (ServiceAddress?, String) in
      // Another call switched already.
      guard state.current == server else { return (state.current, "") }
      if let named, named != server {
        state.current = named
        return (named, "\(server) is a standby; \(named) leads")
      }
      guard addresses.count > 1 else { return (nil, "") }
      let index = addresses.firstIndex(of: server).map { ($0 + 1) % addresses.count } ?? 0
      state.current = addresses[index]
      return (addresses[index], "cannot use \(server) (\(error.message)); trying \(addresses[index])")
    }
    if !reason.isEmpty { logger?.notice("\(reason)") }
    return switched
  }

  /// Runs a call on the server in use; when it answers UNAVAILABLE, on the leader it names or the
  /// next server, up to twice around the list with a short pause between rounds. For calls that
  /// are safe to repeat (reads, and writes that carry an idempotency key or are idempotent).
  public func call<T: Sendable>(_ body: (ControlClient) async throws -> T) async throws -> T {
    var attempts = 0
    while true {
      let server = current
      do {
        return try await body(try client())
      } catch let error as RPCError where error.code == .unavailable {
        attempts += 1
        guard attempts < max(2, 2 * addresses.count + 1), unavailable(error, from: server) != nil else { throw error }
        if attempts % max(1, addresses.count) == 0 { try await Task.sleep(for: .milliseconds(250)) }
      }
    }
  }

  func close() {
    let clients = state.withLock { state in
      state.closed = true
      return Array(state.clients.values)
    }
    for client in clients { client.beginGracefulShutdown() }
    starts.finish()
  }

  /// Parses `A,B,…` (as `--server` and `GPS_SERVER` take it).
  public static func parse(_ text: String, what: String) throws(ServiceAddressError) -> [ServiceAddress] {
    var addresses: [ServiceAddress] = []
    for item in text.split(separator: ",", omittingEmptySubsequences: false) {
      let address = try ServiceAddress(parsing: String(item.trimmingCharacters(in: .whitespaces)), what: what)
      if !addresses.contains(address) { addresses.append(address) }
    }
    return addresses
  }
}

/// Connects to the control servers at `addresses` (one cluster's) for the duration of `body`.
public func withControlServers<T: Sendable>(
  _ addresses: [ServiceAddress], credentials: ControlCredentials = ControlCredentials(), logger: Logger? = nil,
  _ body: (ControlServers) async throws -> T
) async throws -> T {
  precondition(!addresses.isEmpty, "at least one server")
  let (starts, starter) = AsyncStream.makeStream(of: GRPCClient<HTTP2ClientTransport.Posix>.self)
  let servers = ControlServers(addresses, credentials: credentials, logger: logger, starts: starter)
  return try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask {
      await withDiscardingTaskGroup { running in
        for await client in starts { running.addTask { try? await client.runConnections() } }
      }
    }
    do {
      let result = try await body(servers)
      servers.close()
      try await group.waitForAll()
      return result
    } catch {
      servers.close()
      try? await group.waitForAll()
      throw error
    }
  }
}
