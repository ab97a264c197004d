package import Foundation
import GRPCCore
package import Logging
package import RPC
import ServiceLifecycle
import Services

/// Runs service A (over `objectRoot`) and service B in-process on ephemeral loopback ports for the
/// duration of `body`, which receives their addresses.
package func withRunningServices<Result: Sendable>(
  objectRoot: URL,
  a aConfiguration: ServiceServer.Configuration = .init(),
  b bConfiguration: ServiceServer.Configuration = .init(),
  logger: Logger = Logger(label: "gps.test", factory: { _ in SwiftLogNoOpLogHandler() }),
  body: @Sendable (_ a: ServiceAddress, _ b: ServiceAddress) async throws -> Result
) async throws -> Result {
  let store = try ObjectStore(root: objectRoot.path)
  let (aReady, aContinuation) = AsyncStream.makeStream(of: ServiceAddress.self)
  let (bReady, bContinuation) = AsyncStream.makeStream(of: ServiceAddress.self)
  let a = ServiceServer.a(store: store, configuration: aConfiguration, logger: logger) {
    aContinuation.yield($0)
    aContinuation.finish()
  }
  let b = ServiceServer.b(configuration: bConfiguration, logger: logger) {
    bContinuation.yield($0)
    bContinuation.finish()
  }
  return try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await a.run() }
    group.addTask { try await b.run() }
    defer { group.cancelAll() }
    var aIterator = aReady.makeAsyncIterator()
    var bIterator = bReady.makeAsyncIterator()
    guard let aEndpoint = await aIterator.next(), let bEndpoint = await bIterator.next() else {
      throw CancellationError()
    }
    return try await body(aEndpoint, bEndpoint)
  }
}
