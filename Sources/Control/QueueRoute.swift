package import Flows
import Foundation
package import GRPCCore
package import Logging
package import RPC
import Synchronization

/// How a client reaches a queue: through the server that owns the data directory, or, when none
/// runs, through the log itself. The one place that decides, for every command that reads or
/// changes runs.
package struct QueueRoute: Sendable {
  package var dataDirectory: String
  /// The servers to use: given by the user (`explicit`; several: one cluster's, of which the
  /// leader is followed), else the one recorded in the data directory (`ControlAddress`), if any.
  package var servers: [ServiceAddress]
  package var explicit: Bool
  package var credentials: ControlCredentials
  /// Where switching servers is said (one line each).
  package var logger: Logger?

  /// The first server.
  package var server: ServiceAddress? { servers.first }

  package init(dataDirectory: String, server: ServiceAddress? = nil, credentials: ControlCredentials = .init()) {
    self.init(dataDirectory: dataDirectory, servers: server.map { [$0] } ?? [], credentials: credentials)
  }

  package init(dataDirectory: String, servers: [ServiceAddress], credentials: ControlCredentials = .init()) {
    self.dataDirectory = dataDirectory
    self.explicit = !servers.isEmpty
    self.servers = servers.isEmpty ? ControlAddress.read(dataDirectory: dataDirectory).map { [$0] } ?? [] : servers
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
    if !servers.isEmpty {
      let used = Mutex(servers[0])
      do {
        return try await withControlServers(servers, credentials: credentials, logger: logger) { servers in
          // A standby names the leader (and a server that is down is passed over): the call
          // follows, within bounds. Every write a client repeats so carries its idempotency key.
          try await servers.call { client in
            used.withLock { $0 = servers.current }
            return try await viaServer(client)
          }
        }
      } catch let error as RPCError where !explicit && error.code == .unavailable {
        // The recorded server is gone: the log below.
      } catch let error as RPCError {
        throw ServerError(error: error, server: used.withLock { $0 })
      }
    }
    return try await viaLog()
  }
}
