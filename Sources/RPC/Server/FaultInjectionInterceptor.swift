package import GRPCCore

/// Adds latency to every call and fails a fraction of them with UNAVAILABLE, so clients' timeouts
/// and retries can be exercised against real services (`--latency`, `--fail-rate`).
package struct FaultInjectionInterceptor: ServerInterceptor {
  package var latency: Duration
  /// Probability in 0...1 that a call fails with UNAVAILABLE (after the latency).
  package var failRate: Double
  /// Sleeps for the latency; injected so tests control time.
  package var sleep: @Sendable (Duration) async throws -> Void
  /// Returns a uniformly distributed number in 0..<1; injected so tests are deterministic.
  package var random: @Sendable () -> Double

  package init(
    latency: Duration = .zero,
    failRate: Double = 0,
    sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) },
    random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
  ) {
    self.latency = latency
    self.failRate = failRate
    self.sleep = sleep
    self.random = random
  }

  /// True when the interceptor changes nothing and need not be installed.
  package var isInactive: Bool { latency == .zero && failRate <= 0 }

  package func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    if latency > .zero {
      try await sleep(latency)
    }
    if failRate > 0, random() < failRate {
      throw RPCError(
        code: .unavailable, message: "injected failure (--fail-rate \(failRate)); retry the call")
    }
    return try await next(request, context)
  }
}
