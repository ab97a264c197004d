package import GRPCCore
import GRPCNIOTransportHTTP2
package import Logging
import ServiceLifecycle

/// Runs one of GPS's gRPC services (A or B) with health checking, call logging and optional fault
/// injection, as a ServiceLifecycle `Service`: graceful shutdown stops accepting calls, lets the
/// in-flight ones finish, then returns.
package struct ServiceServer: Service {
  package struct Configuration: Sendable {
    /// Where to listen; port 0 picks a free port.
    package var host: String = "127.0.0.1"
    package var port: Int = 0
    /// Requests larger than this are refused with RESOURCE_EXHAUSTED.
    package var maxRequestBytes: Int = 4 * 1024 * 1024
    package var faults = FaultInjectionInterceptor()

    package init() {}

    /// The HTTP/2 transport's cap: requests up to `maxRequestBytes` are served, larger ones up to
    /// this cap get RESOURCE_EXHAUSTED from ``SizeLimitedDeserializer``, and beyond it the stream is
    /// reset before the message is buffered.
    package var transportLimit: Int {
      let (doubled, overflow) = maxRequestBytes.multipliedReportingOverflow(by: 2)
      return overflow ? Int.max : max(doubled, maxRequestBytes + 64 * 1024)
    }
  }

  let name: String
  let service: any RegistrableRPCService
  let descriptor: ServiceDescriptor
  let configuration: Configuration
  let logger: Logger
  let onListening: @Sendable (ServiceAddress) -> Void
  /// The health service, exposed so callers can observe or change serving status.
  package let health: HealthService

  /// - Parameters:
  ///   - name: Short name for logs, e.g. `a`.
  ///   - onListening: Called once with the bound address (useful with port 0).
  package init(
    name: String,
    service: any RegistrableRPCService,
    descriptor: ServiceDescriptor,
    configuration: Configuration,
    logger: Logger,
    onListening: @escaping @Sendable (ServiceAddress) -> Void = { _ in }
  ) {
    self.name = name
    self.service = service
    self.descriptor = descriptor
    self.configuration = configuration
    self.logger = logger
    self.onListening = onListening
    self.health = HealthService(services: [descriptor.fullyQualifiedService])
  }

  package func run() async throws {
    let address = try ServiceAddress(host: configuration.host, port: configuration.port).bindAddress()
    let transport = HTTP2ServerTransport.Posix(
      address: address,
      transportSecurity: .plaintext,
      config: .defaults {
        $0.rpc.maxRequestPayloadSize = configuration.transportLimit
      }
    )
    var interceptors: [ConditionalInterceptor<any ServerInterceptor>] = [
      .apply(CallLoggingInterceptor(logger: logger), to: .services([descriptor])),
      // Inside the logging one, so that the log shows what the client gets.
      .apply(BoundedErrorsInterceptor(), to: .services([descriptor])),
    ]
    if !configuration.faults.isInactive {
      interceptors.append(.apply(configuration.faults, to: .services([descriptor])))
    }
    let server = GRPCServer(
      transport: transport, services: [service, health], interceptorPipeline: interceptors)
    let health = self.health
    let logger = self.logger
    let name = self.name
    let requested = ServiceAddress(host: configuration.host, port: configuration.port)
    try await withGracefulShutdownHandler {
      try await withThrowingDiscardingTaskGroup { group in
        group.addTask {
          do {
            try await server.serve()
          } catch {
            throw Self.explain(error, address: requested)
          }
        }
        // When binding fails, serve() throws the reason; this only reports success.
        guard let bound = try? await transport.listeningAddress else { return }
        guard let address = ServiceAddress(bound) else {
          throw ServiceAddressError(message: "server bound an unexpected address \(bound)")
        }
        logger.info("service \(name) listening", metadata: ["address": "\(address)"])
        onListening(address)
      }
    } onGracefulShutdown: {
      logger.info("service \(name) shutting down; in-flight calls will finish")
      health.shutDown()
      server.beginGracefulShutdown()
    }
    logger.info("service \(name) stopped")
  }

  /// Turns a transport failure into one line that says what to do.
  package static func explain(_ error: any Error, address: ServiceAddress) -> any Error {
    var causes: [String] = []
    var current: (any Error)? = error
    while let error = current {
      if let runtime = error as? RuntimeError {
        causes.append(runtime.message)
        current = runtime.cause
      } else {
        causes.append("\(error)")
        current = nil
      }
    }
    let deepest = causes.last ?? "\(error)"
    if deepest.contains("Address already in use") || deepest.contains("errno: 98") {
      return ServiceAddressError(
        message:
          "cannot listen on \(address): the address is already in use; stop the other process or pass another --port")
    }
    if deepest.contains("Cannot assign requested address") || deepest.contains("errno: 99") {
      return ServiceAddressError(
        message: "cannot listen on \(address): no local interface has that address; check --host")
    }
    if deepest.contains("Permission denied") || deepest.contains("errno: 13") {
      return ServiceAddressError(message: "cannot listen on \(address): permission denied; use a port above 1023")
    }
    return ServiceAddressError(message: "service on \(address) stopped: \(causes.joined(separator: ": "))")
  }
}
