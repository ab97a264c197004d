package import GRPCCore

/// Text from a request quoted in a message: whole when short, else its first `limit` characters,
/// an ellipsis and its length, so an error about a 100 KB URL stays one short line (and the
/// trailers that carry it stay far below HTTP/2's header limits).
package func quotedInput(_ text: String, limit: Int = 120) -> String {
  let cleaned = text.replacing("\0", with: "\\0")
  guard cleaned.count > limit else { return "'\(cleaned)'" }
  return "'\(cleaned.prefix(limit))…' (\(text.utf8.count) bytes)"
}

/// Bounds the message of every error a service returns: a status message echoing a huge input
/// would overflow the trailers, and the client would see `UNAVAILABLE: Stream unexpectedly closed`
/// (and retry) instead of the real error.
package struct BoundedErrorsInterceptor: ServerInterceptor {
  /// The longest message sent, in bytes of UTF-8.
  package let limit: Int

  package init(limit: Int = 2048) {
    self.limit = limit
  }

  package func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let limit = self.limit
    let response: StreamingServerResponse<Output>
    do {
      response = try await next(request, context)
    } catch {
      throw Self.bounded(error, limit: limit)
    }
    switch response.accepted {
    case .failure(let error):
      return StreamingServerResponse(error: Self.bounded(error, limit: limit))
    case .success(var contents):
      let producer = contents.producer
      contents.producer = { writer in
        do {
          return try await producer(writer)
        } catch {
          throw Self.bounded(error, limit: limit)
        }
      }
      return StreamingServerResponse(accepted: .success(contents))
    }
  }

  package static func bounded(_ error: any Error, limit: Int) -> RPCError {
    let rpc: RPCError
    if let error = error as? RPCError {
      rpc = error
    } else if let error = error as? any RPCErrorConvertible {
      rpc = RPCError(error)
    } else {
      return RPCError(code: .unknown, message: "the service failed: \(String("\(error)".prefix(200)))")
    }
    guard rpc.message.utf8.count > limit else { return rpc }
    let cut = String(decoding: rpc.message.utf8.prefix(limit), as: UTF8.self)
    return RPCError(
      code: rpc.code, message: "\(cut)… (message cut at \(limit) of \(rpc.message.utf8.count) bytes)",
      metadata: rpc.metadata)
  }
}
