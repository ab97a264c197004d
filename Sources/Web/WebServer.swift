package import Control
package import Foundation
import GPSModel
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
package import Logging
import NIOCore
import NIOSSL
import Queue
package import RPC
import Synchronization

/// The web UI and its JSON API (`gps server start --http-port`): served by Hummingbird in the
/// control server's process, over the same queue and the same validator as the control API.
package struct WebServer: ControlCompanion {
  package struct Configuration: Sendable {
    package var host = "127.0.0.1"
    /// 0: a free port, reported to `onListening`.
    package var port = 4280
    /// The control API's tokens: when there are any, every page and API call needs one.
    package var tokens = AccessTokens()
    /// The control API's certificate chain and key (PEM files): serve HTTPS with them; nil: HTTP.
    package var tls: (certificateChain: String, privateKey: String)?
    /// Served on `/metrics`: give its ``WebMetrics/factory`` to the queue as its metrics.
    package var metrics = WebMetrics()
    /// The URL users open the web UI by, when it is not the bound address (a name, a proxy): its
    /// host is accepted in Host headers beside the bound address (``HostCheck``).
    package var publicURL: URL?
    /// Connections at once (beyond, new ones wait until one closes), and how long one may stay
    /// without a request in progress (from its start: a stalled TLS handshake too).
    package var maxConnections = 1024
    package var idleTimeout = Duration.seconds(60)

    package init() {}
  }

  let configuration: Configuration
  let logger: Logger
  let onListening: @Sendable (_ scheme: String, ServiceAddress) -> Void
  /// The port bound by the first run: a server that serves again (a leader that stepped down)
  /// keeps its web address.
  private let bound = BoundWebPort()

  package init(
    configuration: Configuration, logger: Logger,
    onListening: @escaping @Sendable (_ scheme: String, ServiceAddress) -> Void = { _, _ in }
  ) {
    self.configuration = configuration
    self.logger = logger
    self.onListening = onListening
  }

  /// The site of the web UI and its API over `engine`, as `configuration` says.
  static func site(engine: Engine, configuration: Configuration) -> Site {
    Site(engine: engine, tokens: configuration.tokens, metrics: configuration.metrics, secure: configuration.tls != nil)
  }

  /// The routes of `site` behind the access middleware: what the server serves, and what tests
  /// call in-process.
  static func router(for site: Site, configuration: Configuration) -> Router<WebContext> {
    let router = Router(context: WebContext.self)
    let hosts = HostCheck(boundHost: configuration.host, publicURL: configuration.publicURL) {
      site.localPort.withLock { $0 }
    }
    let cluster = site.engine.cluster
    router.add(
      middleware: AccessMiddleware(
        tokens: configuration.tokens, hosts: hosts, secure: configuration.tls != nil,
        leaderWeb: { cluster?.leaderWebURL.withLock { $0 } }))
    site.addRoutes(to: router)
    return router
  }

  package func run(engine: Engine) async throws {
    let site = Self.site(engine: engine, configuration: configuration)
    let router = Self.router(for: site, configuration: configuration)
    let requested = ServiceAddress(host: configuration.host, port: bound.port.withLock { $0 } ?? configuration.port)
    let (onListening, bound) = (onListening, bound)
    let publicURL = configuration.publicURL.map { url in
      var text = url.absoluteString
      while text.hasSuffix("/") { text.removeLast() }
      return text
    }
    let logger = logger
    let scheme = configuration.tls == nil ? "http" : "https"
    let server: HTTPServerBuilder
    let http1 = HTTPServerBuilder.http1(configuration: .init(idleTimeout: TimeAmount(configuration.idleTimeout)))
    if let tls = configuration.tls {
      do {
        let chain = try NIOSSLCertificate.fromPEMFile(tls.certificateChain).map {
          NIOSSLCertificateSource.certificate($0)
        }
        let key = try NIOSSLPrivateKey(file: tls.privateKey, format: .pem)
        server = try .tls(
          http1,
          tlsConfiguration: TLSConfiguration.makeServerConfiguration(
            certificateChain: chain, privateKey: .privateKey(key)))
      } catch {
        throw ControlError(
          "cannot serve the web UI over TLS with \(tls.certificateChain) and \(tls.privateKey): \(error)")
      }
    } else {
      server = http1
    }
    let app = Application(
      router: router,
      server: server,
      configuration: .init(
        address: .hostname(requested.host, port: requested.port), serverName: nil,
        availableConnectionsDelegate: MaximumAvailableConnections(configuration.maxConnections, logger: logger)),
      onServerRunning: { channel in
        guard let port = channel.localAddress?.port else { return }
        let address = ServiceAddress(host: requested.host, port: port)
        site.localPort.withLock { $0 = port }
        bound.port.withLock { $0 = port }
        engine.cluster?.webURL.withLock { $0 = publicURL ?? "\(scheme)://\(address)" }
        logger.info("web server listening", metadata: ["address": "\(scheme)://\(address)"])
        onListening(scheme, address)
      },
      logger: logger)
    do {
      // The server's service group shuts the web down after the scheduler and the control API, so
      // pages and the API still answer while the runs in flight drain.
      try await app.run()
    } catch let error as IOError {
      let reason = error.errnoCode == EADDRINUSE ? "the port is in use" : "\(error)"
      throw ControlError(
        "cannot serve the web UI on \(requested): \(reason); give another --http-port (0 picks a free one) or --no-web")
    }
  }
}

/// The web server's bound port, kept across its runs.
private final class BoundWebPort: Sendable {
  let port = Mutex<Int?>(nil)
}
