package import Flows
import Foundation
package import GRPCCore
package import RPC

/// How a client reaches a queue: through the server that owns the data directory, or, when none
/// runs, through the log itself. The one place that decides, for every command that reads or
/// changes runs.
package struct QueueRoute: Sendable {
  package var dataDirectory: String
  /// The server to use: given by the user (`explicit`), else the one recorded in the data
  /// directory (`ControlAddress`), if any.
  package var server: ServiceAddress?
  package var explicit: Bool
  package var credentials: ControlCredentials

  package init(dataDirectory: String, server: ServiceAddress? = nil, credentials: ControlCredentials = .init()) {
    self.dataDirectory = dataDirectory
    self.explicit = server != nil
    self.server = server ?? ControlAddress.read(dataDirectory: dataDirectory)
    self.credentials = credentials
  }

  /// A call the server answered with an error (or that could not reach a server given explicitly).
  package struct ServerError: Error {
    package var error: RPCError
    package var server: ServiceAddress
  }

  /// Runs `viaServer` against the server; when a recorded server is gone (its address is left
  /// behind by a killed process: UNAVAILABLE), runs `viaLog` instead. A server's error is thrown as
  /// ``ServerError``; any other error of the closures as it is.
  package func run<T: Sendable>(
    viaServer: (ControlClient) async throws -> T, viaLog: () async throws -> T
  ) async throws -> T {
    if let server {
      do {
        return try await withControlClient(server, credentials: credentials) { try await viaServer($0) }
      } catch let error as RPCError where !explicit && error.code == .unavailable {
        // The recorded server is gone: the log below.
      } catch let error as RPCError {
        throw ServerError(error: error, server: server)
      }
    }
    return try await viaLog()
  }
}
