import Control
import GPSModel
import Hummingbird

extension Site {
  /// `GET /api/cluster`: the servers of the store this server belongs to, their roles and lag.
  func cluster(_ context: WebContext) async throws -> Response {
    _ = try caller(for: Gps_V1_Control.Method.ListRuns.descriptor, context)
    guard let cluster = engine.cluster else {
      throw WebError.notFound("this server keeps its log in files (no --store): it belongs to no cluster")
    }
    do {
      return .json(try await cluster.status().json(me: cluster.serverID))
    } catch {
      throw WebError(status: .serviceUnavailable, code: "UNAVAILABLE", message: error.message, retryAfter: 1)
    }
  }
}
