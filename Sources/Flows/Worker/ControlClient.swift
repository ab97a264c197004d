public import GPSModel
package import GRPCCore
public import GRPCNIOTransportHTTP2
public import RPC

/// A client of a control server's API.
public typealias ControlClient = Gps_V1_Control.Client<HTTP2ClientTransport.Posix>

/// How a client proves who it is to a control server, and checks who the server is.
public struct ControlCredentials: Sendable {
  /// Sent as `authorization: Bearer TOKEN` with every call; nil: none.
  public var token: String?
  /// A PEM file of the certificate authorities that vouch for the server: the connection is TLS,
  /// and the server's certificate must chain to one of them. Nil: plaintext.
  public var certificateAuthorities: String?

  public init(token: String? = nil, certificateAuthorities: String? = nil) {
    self.token = token
    self.certificateAuthorities = certificateAuthorities
  }
}

/// Connects to the control server at `address` for the duration of `body`.
public func withControlClient<T: Sendable>(
  _ address: ServiceAddress, credentials: ControlCredentials = ControlCredentials(),
  _ body: (ControlClient) async throws -> T
) async throws -> T {
  try await withGRPCClient(
    transport: try ControlServers.transport(address, credentials: credentials),
    interceptors: credentials.token.map { [TokenInterceptor(token: $0)] } ?? []
  ) { client in
    try await body(ControlClient(wrapping: client))
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
