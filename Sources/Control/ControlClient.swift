public import GRPCCore
public import GRPCNIOTransportHTTP2
public import RPC

/// A client of a control server's API.
public typealias ControlClient = Gps_V1_Control.Client<HTTP2ClientTransport.Posix>

/// Connects to the control server at `address` for the duration of `body`.
public func withControlClient<T: Sendable>(
  _ address: ServiceAddress, _ body: (ControlClient) async throws -> T
) async throws -> T {
  try await withGRPCClient(
    transport: try .http2NIOPosix(
      target: address.resolvableTarget, transportSecurity: .plaintext,
      config: .defaults {
        // A server behind a cut link is noticed within seconds (a scheduler then reconnects).
        $0.connection.keepalive = .init(time: .seconds(10), timeout: .seconds(5), allowWithoutCalls: true)
      })
  ) { client in
    try await body(ControlClient(wrapping: client))
  }
}
