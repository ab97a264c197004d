public import GRPCCore

extension RPCError.Code {
  /// The status name as gRPC documents it and other languages print it, e.g. `NOT_FOUND`.
  public var canonicalName: String {
    let names = [
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
      "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
    ]
    return names.indices.contains(rawValue) ? names[rawValue] : "CODE_\(rawValue)"
  }
}
