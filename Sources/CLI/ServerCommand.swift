import ArgumentParser
import Logging
import RPC
import ReferenceFlow
import ServiceLifecycle
import Services
import UnixSignals

struct ServerCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "server",
    abstract: "Run a GPS server: the control server with its queue (start), or the reference services A and B.",
    subcommands: [ServerStart.self, ServerA.self, ServerB.self]
  )
}

/// Options every service shares.
struct ServiceOptions: ParsableArguments {
  @Option(help: "Address to bind (an IP address).")
  var host = "127.0.0.1"

  @Option(
    parsing: .unconditional,
    help:
      "Port to listen on (default: 50051 for A, 50052 for B); 0 picks a free port. The bound address is printed on stdout."
  )
  var port: Int?

  @Option(
    parsing: .unconditional, help: "Delay added to every call, e.g. 250ms, to exercise timeouts.",
    transform: DurationArgument.parse)
  var latency = DurationArgument(.zero, text: "0")

  @Option(parsing: .unconditional, help: "Fraction of calls (0 to 1) that fail with UNAVAILABLE, to exercise retries.")
  var failRate: Double = 0

  @Option(parsing: .unconditional, help: "Largest request accepted, in bytes; larger ones get RESOURCE_EXHAUSTED.")
  var maxRequestBytes = 4 * 1024 * 1024

  @Option(help: "Log level: trace, debug, info, notice, warning, error or critical.")
  var logLevel = "info"

  func validate() throws {
    if let port, !(0...65535).contains(port) {
      throw ValidationError("--port \(port) is out of range; give 0 to 65535")
    }
    guard (0...1).contains(failRate) else {
      throw ValidationError("--fail-rate \(failRate) is out of range; give a probability from 0 to 1")
    }
    guard maxRequestBytes > 0 else {
      throw ValidationError("--max-request-bytes must be positive")
    }
    guard Logger.Level(rawValue: logLevel) != nil else {
      throw ValidationError(
        "--log-level '\(logLevel)' is unknown; use trace, debug, info, notice, warning, error or critical")
    }
  }

  func configuration(defaultPort: Int) -> ServiceServer.Configuration {
    var configuration = ServiceServer.Configuration()
    configuration.host = host
    configuration.port = port ?? defaultPort
    configuration.maxRequestBytes = maxRequestBytes
    configuration.faults = FaultInjectionInterceptor(latency: latency.duration, failRate: failRate)
    return configuration
  }

  /// Runs `server` until SIGINT or SIGTERM, then shuts it down gracefully.
  func run(
    name: String, defaultPort: Int,
    _ makeServer: (ServiceServer.Configuration, Logger, @escaping @Sendable (ServiceAddress) -> Void) -> ServiceServer
  ) async throws {
    let logger = bootstrapLogging(label: "gps.server.\(name)", level: logLevel)
    let server = makeServer(configuration(defaultPort: defaultPort), logger) { endpoint in
      printLine("listening on \(endpoint)")
    }
    let group = ServiceGroup(
      configuration: .init(
        services: [.init(service: server)],
        gracefulShutdownSignals: [.sigterm, .sigint],
        logger: logger))
    do {
      try await group.run()
    } catch let error as ServiceAddressError {
      throw CommandFailure(error.message)
    }
  }
}

struct ServerA: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "a",
    abstract: "Service A: resolves object URLs in the object store and returns a manifest with sizes and SHA-256s."
  )

  @OptionGroup var options: ServiceOptions

  @Option(help: "Root directory of the object store (s3://BUCKET/KEY maps to ROOT/BUCKET/KEY).")
  var objectRoot = "data/objects"

  func run() async throws {
    let store: ObjectStore
    do {
      store = try ObjectStore(root: objectRoot)
    } catch {
      throw CommandFailure(error.message + (error.code == .invalidRoot ? "; create it or pass --object-root DIR" : ""))
    }
    try await options.run(name: "a", defaultPort: 50051) { configuration, logger, onListening in
      .a(store: store, configuration: configuration, logger: logger, onListening: onListening)
    }
  }
}

struct ServerB: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "b",
    abstract: "Service B: validates a manifest and returns the dataset's Response with its digest."
  )

  @OptionGroup var options: ServiceOptions

  func run() async throws {
    try await options.run(name: "b", defaultPort: 50052) { configuration, logger, onListening in
      .b(configuration: configuration, logger: logger, onListening: onListening)
    }
  }
}

func bootstrapLogging(label: String, level: String) -> Logger {
  let level = Logger.Level(rawValue: level) ?? .info
  LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = level
    return handler
  }
  return Logger(label: label)
}
