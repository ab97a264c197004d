package import GRPCCore
package import Logging

/// The request metadata key that carries a task step's idempotency key (`run id/step/attempt`).
package let idempotencyKeyMetadataKey = "gps-idempotency-key"

/// Logs every call when it starts and when it ends, with its idempotency key, deadline (`grpc-timeout`),
/// outcome and duration.
package struct CallLoggingInterceptor: ServerInterceptor {
  package let logger: Logger

  package init(logger: Logger) {
    self.logger = logger
  }

  package func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    // Above info nothing is logged: skip the per-call formatting too.
    guard logger.logLevel <= .info else { return try await next(request, context) }
    let start = ContinuousClock.now
    var logger = self.logger
    logger[metadataKey: "method"] = "\(context.descriptor.fullyQualifiedMethod)"
    logger[metadataKey: "peer"] = "\(context.remotePeer)"
    let key = request.metadata[stringValues: idempotencyKeyMetadataKey].first(where: { _ in true })
    logger[metadataKey: "idempotency_key"] = "\(key ?? "-")"
    if let timeout = request.metadata[stringValues: grpcTimeoutMetadataKey].first(where: { _ in true }) {
      logger[metadataKey: "timeout"] = "\(timeout)"
    }
    logger.info("call started")
    let callLogger = logger

    @Sendable func finished(_ outcome: String, error: (any Error)? = nil) {
      let elapsed = ContinuousClock.now - start
      var metadata: Logger.Metadata = ["status": "\(outcome)", "duration": "\(elapsed.formatted)"]
      if let error { metadata["error"] = "\((error as? RPCError)?.message ?? "\(error)")" }
      callLogger.info("call finished", metadata: metadata)
    }

    let response: StreamingServerResponse<Output>
    do {
      response = try await next(request, context)
    } catch {
      finished(Self.statusName(of: error), error: error)
      throw error
    }
    switch response.accepted {
    case .failure(let error):
      finished(Self.statusName(of: error), error: error)
      return response
    case .success(var contents):
      let producer = contents.producer
      contents.producer = { writer in
        do {
          let trailers = try await producer(writer)
          finished("OK")
          return trailers
        } catch {
          finished(Self.statusName(of: error), error: error)
          throw error
        }
      }
      return StreamingServerResponse(accepted: .success(contents))
    }
  }

  static func statusName(of error: any Error) -> String {
    if let error = error as? RPCError { return error.code.canonicalName }
    if let error = error as? any RPCErrorConvertible { return error.rpcErrorCode.canonicalName }
    return RPCError.Code.unknown.canonicalName
  }
}

extension Duration {
  /// Milliseconds with three decimals, e.g. `1.234ms`.
  var formatted: String {
    let micros = components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000
    let millis = Double(micros) / 1000
    return "\((millis * 1000).rounded() / 1000)ms"
  }
}
