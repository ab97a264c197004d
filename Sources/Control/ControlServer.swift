public import Flows
import Foundation
import GPSModel
import GRPCCore
import GRPCNIOTransportHTTP2
public import Logging
import PostgresStore
public import Queue
public import RPC
public import ServiceLifecycle
import Synchronization

/// Serves the queue beside the control API, in the same process (the web server).
package protocol ControlCompanion: Sendable {
  /// Runs until graceful shutdown, which comes after the scheduler and the control API stopped.
  func run(engine: Engine) async throws
}

/// `gps server start`: owns a data directory's queue, serves the control API, and (unless told
/// not to) runs a scheduler in the same process.
///
/// On graceful shutdown (SIGTERM / SIGINT) it stops claiming, lets the runs in flight finish
/// within `grace`, ends the streams, stops serving, writes a snapshot and releases the directory.
public struct ControlServer: Service {
  /// Who the server is in the log when it registers deployments for itself (the reference flow):
  /// such deployments belong to no principal, and any worker may serve them.
  package static let selfPrincipal = "server"

  /// What the server serves and how: its data directory, addresses, limits, tokens and TLS.
  public struct Configuration: Sendable {
    public var dataDirectory = "data"
    public var host = "127.0.0.1"
    public var port = 4200
    /// Run a scheduler in this process, with this many runs at once; nil: none.
    public var schedulerConcurrency: Int? = 16
    /// How long runs in flight may take to finish once shutdown begins.
    public var grace: Duration = .seconds(30)
    /// Once runs in flight are done (or `grace` is over), how long open connections may take to
    /// close before the server closes them.
    public var shutdownTimeout: Duration = .seconds(5)
    /// The queue's options; a server keeps terminal runs in the run index, not in memory, and
    /// checks the log's sealed segments after it is ready instead of before.
    public var queue: QueueOptions = {
      var options = QueueOptions.dataDirectory
      options.log.scanSealedSegments = false
      return options
    }()
    public var scheduler = SchedulerOptions()
    /// Who may call; empty: anyone who reaches the port (only allowed on loopback).
    public var tokens = AccessTokens()
    /// Following streams open at once (watches, followed history, work signals, the web's events).
    public var streams = StreamLimits(fileLimit: 1024)
    /// Connections of the control API at once, in all and per host, and the handshake's time.
    public var connections = ConnectionLimits(fileLimit: 1024)
    /// The server's certificate chain and private key (PEM files); nil: plaintext (loopback only).
    public var tls: (certificateChain: String, privateKey: String)?
    /// Archive sealed segments older than this (`--retain 90d`); nil: keep the whole log.
    public var retention: Retention?
    /// The log's home in PostgreSQL (`--store`): the data directory then holds a local copy of it
    /// (and the derived run index and snapshots). Nil: the data directory's files are the log.
    package var store: StoreConfiguration?

    public init() {}

    /// Refuses a bind beyond loopback without both a token and TLS: anyone who reached the port
    /// could otherwise enqueue, cancel and act as a scheduler, in clear text.
    public func checkAccess() throws {
      guard !ServiceAddress.isLoopback(host) else { return }
      var missing: [String] = []
      if tls == nil { missing.append("TLS (--tls-cert and --tls-key)") }
      if tokens.isEmpty { missing.append("tokens (--tokens FILE)") }
      guard missing.isEmpty else {
        throw ControlError(
          "binding \(host), beyond loopback, needs \(missing.joined(separator: " and ")): without them anyone who reaches the port may run, cancel and claim runs"
        )
      }
    }
  }

  /// How long the log keeps its segments before they move to `DATA/archive/` (or are deleted).
  public struct Retention: Sendable {
    /// Segments whose every event is older than this are archived.
    public var age: Duration
    /// Delete them instead of keeping them in `DATA/archive/`.
    public var delete = false
    /// How often the server looks for segments to archive (first at startup).
    public var checkEvery: Duration = .seconds(60)

    public init(age: Duration, delete: Bool = false) {
      self.age = age
      self.delete = delete
    }
  }

  /// The deployments the embedded scheduler registers and serves, and the scope in which their
  /// steps' dependencies live (e.g. gRPC clients connected for as long as the scheduler runs).
  public struct EmbeddedWorker: Sendable {
    public var registry: DeploymentRegistry
    public var withDependencies: @Sendable (_ body: @Sendable (Dependencies) async throws -> Void) async throws -> Void

    public init(
      registry: DeploymentRegistry,
      withDependencies:
        @escaping @Sendable (_ body: @Sendable (Dependencies) async throws -> Void) async throws ->
        Void = { body in try await body(Dependencies()) }
    ) {
      self.registry = registry
      self.withDependencies = withDependencies
    }
  }

  let configuration: Configuration
  let worker: EmbeddedWorker
  let logger: Logger
  let onReady: @Sendable (ServiceAddress, RunQueue) -> Void
  /// What else serves this queue in the process (the web server), from when the control API
  /// listens until the server stops; one that fails stops the server with its error.
  package var companions: [any ControlCompanion] = []

  /// A server of `configuration`'s data directory, running `worker`'s deployments in its
  /// embedded scheduler; `onListening` is told the control API's address once it listens.
  public init(
    configuration: Configuration, worker: EmbeddedWorker = EmbeddedWorker(registry: DeploymentRegistry()),
    logger: Logger, onListening: @escaping @Sendable (ServiceAddress) -> Void = { _ in }
  ) {
    self.init(configuration: configuration, worker: worker, logger: logger) { address, _ in onListening(address) }
  }

  /// Like ``init(configuration:worker:logger:onListening:)``, telling `onReady` the queue too.
  package init(
    configuration: Configuration, worker: EmbeddedWorker = EmbeddedWorker(registry: DeploymentRegistry()),
    logger: Logger, onReady: @escaping @Sendable (ServiceAddress, RunQueue) -> Void
  ) {
    self.configuration = configuration
    self.worker = worker
    self.logger = logger
    self.onReady = onReady
  }

  public func run() async throws {
    try configuration.checkAccess()
    guard let storeConfiguration = configuration.store else {
      return try await serve(store: nil, port: configuration.port)
    }
    let store = try await PostgresStore.open(
      storeConfiguration.location, password: storeConfiguration.password, logger: logger)
    defer { store.close() }
    // A leader that loses the lead (deposed while paused or cut off, fenced, its store gone for
    // longer than a commit waits) steps down and serves on as a standby: everything is opened
    // again from the store's log, on the ports it had, and it follows whoever leads now.
    var port = configuration.port
    while true {
      let bound = BoundPort()
      do {
        return try await serve(store: store, port: port, bound: bound)
      } catch let steppedDown as StoreRole.SteppedDown {
        logger.warning("\(steppedDown.message); this server steps down and stands by")
        port = bound.port ?? port
        guard try await waitForStore(store) else { return }
      }
    }
  }

  /// Waits for `store` to answer, saying so once, before a server that stepped down opens again
  /// from it; false when a graceful shutdown came first.
  private func waitForStore(_ store: PostgresStore) async throws -> Bool {
    var said = false
    while true {
      guard let failure = await Self.failure(reaching: store) else { return true }
      guard failure.code == .unavailable else { throw failure }
      if !said { logger.warning("cannot reach the store to stand by: \(failure.message); retrying every second") }
      said = true
      do {
        try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
      } catch is CancellationError {
        return false
      }
    }
  }

  /// Why `store` does not answer; nil when it does.
  private static func failure(reaching store: PostgresStore) async -> QueueError? {
    do {
      _ = try await store.leader()
      return nil
    } catch {
      return error
    }
  }

  /// Serves until a graceful shutdown (or, on a store, until this server steps down as leader).
  private func serve(store storeHandle: PostgresStore?, port: Int, bound boundPort: BoundPort = BoundPort())
    async throws
  {
    var options = configuration.queue
    let logger = logger
    options.onIndexFailure = { error in
      logger.error(
        "the run index stopped committing: \(error.message); runs go on, terminal runs stay in memory, and /readyz says degraded until a restart rebuilds or repairs it"
      )
    }
    // On a store: the data directory is brought up to the store's log, and the queue opens as a
    // standby that follows it until this server leads (StoreRole).
    if let storeHandle {
      try await StoreMirror.catchUp(directory: configuration.dataDirectory, store: storeHandle, options: options.log)
      options.standby = true
      // The store is where the log is durable; the files are a copy, refilled from it at start.
      options.log.fsync = .none
    }
    // Opening replays (and may repair) the log: file work, on the blocking pool, waited for to
    // its end even when cancelled (an opened queue holds the lock until it is closed).
    let directory = configuration.dataDirectory
    let opening = options
    let queue = try await toTheEndOnBlockingPool {
      Result { () throws(QueueError) in try RunQueue(directory: directory, options: opening) }
    }.get()
    defer { queue.close() }
    logger.info(
      "queue opened",
      metadata: [
        "directory": "\(configuration.dataDirectory)", "runs": "\(queue.counts.total)",
        "events": "\(queue.durableSequence)",
        "snapshot": "\(queue.startup.snapshotSequence.map(String.init) ?? "none")",
        "replayed": "\(queue.startup.replayedEvents)",
      ])
    // The embedded worker's deployments are registered even when no scheduler runs here: runs
    // can then be enqueued (validated against them) and wait for a remote worker. On a store,
    // once this server leads.
    let (definitions, registering) = (worker.registry.definitions, !worker.registry.names.isEmpty)
    let registerEmbedded: @Sendable () async throws -> Void = {
      // Not a sighting: whether a worker serves them is for the scheduler's claims to say.
      if registering {
        _ = try await queue.register(definitions, worker: "gps-server", by: Self.selfPrincipal, serving: false)
      }
    }
    let leading = Latch()
    var role: StoreRole?
    var membership: ClusterMembership?
    if let storeHandle, let storeConfiguration = configuration.store {
      let member = ClusterMembership(
        store: storeHandle, serverID: storeConfiguration.serverID, advertise: storeConfiguration.advertise)
      membership = member
      role = StoreRole(
        store: storeHandle, configuration: storeConfiguration, queue: queue, membership: member, logger: logger,
        leading: leading, onLeading: registerEmbedded)
    } else {
      try await registerEmbedded()
      leading.open()
    }
    let service = ControlService(
      engine: Engine(
        queue: queue, streams: configuration.streams, tokens: configuration.tokens, cluster: membership))
    let requested = ServiceAddress(host: configuration.host, port: port)
    let security: HTTP2ServerTransport.Posix.TransportSecurity =
      if let tls = configuration.tls {
        .tls(
          certificateChain: [.file(path: tls.certificateChain, format: .pem)],
          privateKey: .file(path: tls.privateKey, format: .pem))
      } else {
        .plaintext
      }
    let gate = ConnectionGate(limits: configuration.connections, logger: logger)
    let transport = HTTP2ServerTransport.Posix(
      address: try requested.bindAddress(), transportSecurity: security,
      config: .defaults {
        // Requests with parameters up to the queue's limit (and some beyond, so that the queue
        // refuses them with its own message) arrive whole.
        $0.rpc.maxRequestPayloadSize = max(4 << 20, configuration.queue.maxParameterBytes + (1 << 20))
        // A scheduler behind a cut link is noticed (and its streams closed) within seconds, not
        // when the kernel gives up on the connection; schedulers ping too, even when idle.
        $0.connection.keepalive = .init(
          time: .seconds(10), timeout: .seconds(5),
          clientBehavior: .init(minPingIntervalWithoutCalls: .seconds(5), allowWithoutCalls: true))
        $0.connection.maxIdleTime = configuration.connections.idleTimeout
        $0.channelDebuggingCallbacks = gate.callbacks
      })
    let server = GRPCServer(
      transport: transport, services: [service],
      interceptors: [
        AccessInterceptor(tokens: configuration.tokens, localPort: { boundPort.port }),
        BoundedErrorsInterceptor(),
      ])
    let onReady = onReady
    let keeper = role
    let ready = Latch()
    // Shut down in the reverse of this order: the scheduler drains first, the control API ends
    // its streams and stops, the web answers until then, and the queue's maintenance runs to the end.
    // The lease is kept to the end (released last, after the last write).
    var services: [ServiceGroupConfiguration.ServiceConfiguration] = role.map { [.init(service: $0)] } ?? []
    services.append(.init(service: QueueMaintenance(queue: queue, leading: leading)))
    if !configuration.queue.log.scanSealedSegments {
      services.append(
        .init(service: SealedSegmentCheck(directory: configuration.dataDirectory, ready: ready, logger: logger)))
    }
    if let retention = configuration.retention {
      services.append(
        .init(service: RetentionService(queue: queue, retention: retention, leading: leading, logger: logger)))
    }
    services += companions.map { .init(service: CompanionService(companion: $0, engine: service.engine, ready: ready)) }
    services.append(
      .init(
        service: ControlAPIService(
          server: server, transport: transport, service: service, requested: requested,
          dataDirectory: configuration.dataDirectory, boundPort: boundPort,
          shutdownTimeout: configuration.shutdownTimeout, ready: ready, logger: logger,
          onReady: { address in
            if let keeper, keeper.configuration.advertise == nil { keeper.recordAddress("\(address)") }
            onReady(address, queue)
          })
      ))
    if let concurrency = configuration.schedulerConcurrency, !worker.registry.names.isEmpty {
      var options = configuration.scheduler
      options.concurrency = concurrency
      services.append(
        .init(
          service: EmbeddedScheduler(
            queue: queue, worker: worker, options: options, grace: configuration.grace, ready: ready,
            leading: leading, logger: logger)))
    }
    try await ServiceGroup(configuration: .init(services: services, logger: logger)).run()
    logger.info(
      "control server stopped; \(queue.indexStatus == nil ? "writing a snapshot" : "committing the run index") and releasing the data directory"
    )
  }
}

/// Where a running server's address is recorded, so the CLI finds it through `--data-dir`.
package enum ControlAddress {
  package static func file(in dataDirectory: String) -> String { dataDirectory + "/server.addr" }

  /// The address recorded in `dataDirectory`, if a server wrote one.
  package static func read(dataDirectory: String) -> ServiceAddress? {
    guard let text = try? String(contentsOfFile: file(in: dataDirectory), encoding: .utf8) else { return nil }
    return try? ServiceAddress(parsing: text.trimmingCharacters(in: .whitespacesAndNewlines), what: "server address")
  }

  static func write(_ address: ServiceAddress, to path: String) throws {
    // Not `Data.write(to:)`: on Linux it leaves a /tmp/TemporaryDirectory.* folder per call.
    try PosixFileSystem().writeAtomically(path, contents: Array("\(address)\n".utf8))
  }

  static func remove(_ path: String, ifItIs address: ServiceAddress) {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8),
      text.trimmingCharacters(in: .whitespacesAndNewlines) == address.description
    else { return }
    unlink(path)
  }
}
