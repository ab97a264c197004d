package import GRPCCore

/// Refuses request messages above a size with RESOURCE_EXHAUSTED, which clients treat as final.
///
/// The HTTP/2 transport's own limit resets the stream instead, which clients see as UNAVAILABLE and
/// would retry forever; so the transport's limit is set higher (``ServiceServer/Configuration/transportLimit``) and
/// this deserializer gives the precise answer below it.
package struct SizeLimitedDeserializer<Wrapped: MessageDeserializer>: MessageDeserializer {
  package typealias Message = Wrapped.Message

  let wrapped: Wrapped
  let limit: Int

  package init(_ wrapped: Wrapped, limit: Int) {
    self.wrapped = wrapped
    self.limit = limit
  }

  package func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> Message {
    guard serializedMessageBytes.count <= limit else {
      throw RPCError(
        code: .resourceExhausted,
        message:
          "request of \(serializedMessageBytes.count) bytes exceeds the limit of \(limit) bytes (--max-request-bytes)")
    }
    return try wrapped.deserialize(serializedMessageBytes)
  }
}
