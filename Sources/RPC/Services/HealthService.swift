package import GRPCCore
import SwiftProtobuf
import Synchronization

/// The standard `grpc.health.v1.Health` service.
///
/// Tracks a serving status per service name (`""` is the whole server). When the server shuts down,
/// ``shutDown()`` reports NOT_SERVING to every watcher and ends their streams so graceful shutdown
/// is not held open by `Watch` calls.
package final class HealthService: Grpc_Health_V1_Health.SimpleServiceProtocol, Sendable {
  package typealias Status = Grpc_Health_V1_HealthCheckResponse.ServingStatus

  private struct State {
    var statuses: [String: Status]
    var watchers: [Int: (service: String, continuation: AsyncStream<Status>.Continuation)] = [:]
    var nextWatcher = 0
    var isShutDown = false
  }

  private let state: Mutex<State>

  /// Creates a service reporting SERVING for the server (`""`) and for each of `services`.
  package init(services: [String]) {
    var statuses: [String: Status] = ["": .serving]
    for service in services { statuses[service] = .serving }
    self.state = Mutex(State(statuses: statuses))
  }

  /// Sets the status of `service` and notifies its watchers.
  package func setStatus(_ status: Status, for service: String) {
    state.withLock { state in
      guard !state.isShutDown else { return }
      state.statuses[service] = status
      for watcher in state.watchers.values where watcher.service == service {
        watcher.continuation.yield(status)
      }
    }
  }

  /// Marks every service NOT_SERVING and ends all `Watch` streams.
  package func shutDown() {
    let watchers = state.withLock { state in
      state.isShutDown = true
      for key in state.statuses.keys { state.statuses[key] = .notServing }
      defer { state.watchers = [:] }
      return state.watchers.values
    }
    for watcher in watchers {
      watcher.continuation.yield(.notServing)
      watcher.continuation.finish()
    }
  }

  package func check(
    request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext
  ) async throws -> Grpc_Health_V1_HealthCheckResponse {
    guard let status = state.withLock({ $0.statuses[request.service] }) else {
      throw RPCError(code: .notFound, message: "unknown service \(quotedInput(request.service))")
    }
    return .with { $0.status = status }
  }

  package func watch(
    request: Grpc_Health_V1_HealthCheckRequest,
    response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
    context: ServerContext
  ) async throws {
    let (stream, continuation) = AsyncStream.makeStream(of: Status.self)
    let id: Int? = state.withLock { state in
      continuation.yield(state.statuses[request.service] ?? .serviceUnknown)
      guard !state.isShutDown else {
        continuation.finish()
        return nil
      }
      defer { state.nextWatcher += 1 }
      state.watchers[state.nextWatcher] = (request.service, continuation)
      return state.nextWatcher
    }
    defer {
      if let id { _ = state.withLock { $0.watchers.removeValue(forKey: id) } }
    }
    // The stream ends at shutdown or when the client goes away (cancellation ends the iteration).
    for await status in stream {
      try await response.write(.with { $0.status = status })
    }
  }
}
