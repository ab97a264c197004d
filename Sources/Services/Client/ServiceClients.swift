package import GRPCCore
package import GRPCNIOTransportHTTP2
package import RPC

/// Long-lived gRPC clients for services A and B.
///
/// Use ``withServiceClients(a:b:body:)``: the connections live exactly as long as the closure.
package struct ServiceClients: Sendable {
  package let a: Gps_V1_A.Client<HTTP2ClientTransport.Posix>
  package let b: Gps_V1_B.Client<HTTP2ClientTransport.Posix>
  package let aEndpoint: ServiceAddress
  package let bEndpoint: ServiceAddress

  /// Runs the reference pipeline directly: A prepares a manifest, B processes it.
  ///
  /// Both calls carry `idempotencyKey` (with the step name appended) in the `gps-idempotency-key`
  /// metadata and fail with DEADLINE_EXCEEDED after `timeout`.
  package func runPipeline(
    _ dataInfo: Gps_V1_DataInfo, idempotencyKey: String, timeout: Duration
  ) async throws(PipelineError) -> Gps_V1_Response {
    var options = CallOptions.defaults
    options.timeout = timeout
    let manifest: Gps_V1_Manifest
    do {
      manifest = try await a.prepare(
        dataInfo, metadata: [idempotencyKeyMetadataKey: "\(idempotencyKey)/prepare"], options: options)
    } catch {
      throw PipelineError(step: "prepare", service: "A", endpoint: aEndpoint, cause: error)
    }
    do {
      return try await b.process(
        manifest, metadata: [idempotencyKeyMetadataKey: "\(idempotencyKey)/process"], options: options)
    } catch {
      throw PipelineError(step: "process", service: "B", endpoint: bEndpoint, cause: error)
    }
  }
}

/// Connects to A and B, runs `body` with the clients, then closes the connections.
package func withServiceClients<Result: Sendable>(
  a: ServiceAddress,
  b: ServiceAddress,
  body: (ServiceClients) async throws -> Result
) async throws -> Result {
  try await withGRPCClient(
    transport: try .http2NIOPosix(target: a.resolvableTarget, transportSecurity: .plaintext)
  ) { aClient in
    try await withGRPCClient(
      transport: try .http2NIOPosix(target: b.resolvableTarget, transportSecurity: .plaintext)
    ) { bClient in
      try await body(
        ServiceClients(
          a: Gps_V1_A.Client(wrapping: aClient), b: Gps_V1_B.Client(wrapping: bClient),
          aEndpoint: a, bEndpoint: b))
    }
  }
}

/// A failed step of the pipeline, with the service's status code and message.
package struct PipelineError: Error, Sendable, CustomStringConvertible {
  package var step: String
  package var service: String
  package var endpoint: ServiceAddress
  package var cause: any Error

  /// The gRPC status code, when the service answered or the call failed in gRPC.
  package var code: RPCError.Code? { (cause as? RPCError)?.code }

  package var description: String {
    guard let error = cause as? RPCError else {
      return "step \(step): service \(service) at \(endpoint) failed: \(cause)"
    }
    switch error.code {
    case .unavailable where error.message.contains("injected"):
      return "step \(step): service \(service) at \(endpoint) is unavailable: \(error.message)"
    case .unavailable:
      return
        "step \(step): service \(service) at \(endpoint) is unreachable (\(error.message))"
    case .deadlineExceeded:
      return
        "step \(step): service \(service) at \(endpoint) did not answer in time"
    default:
      return "step \(step): service \(service) answered \(error.code.canonicalName): \(error.message)"
    }
  }
}
