import ArgumentParser
import Control
import Flows
import Foundation
import GPSModel
import Logging
import PostgresStore
import Queue
import RPC
import ReferenceFlow
import ServiceLifecycle
import Services
import UnixSignals
import Web

struct ServerStart: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "start",
    abstract: "Run the control server: owns the data directory's queue, serves the control API, runs a scheduler.",
    discussion: """
      Takes the data directory's lock, replays the log (newest snapshot plus the events after it),
      records its address in DATA_DIR/server.addr so the CLI finds it, and serves the control API
      (protos/gps/v1/queue.proto). Unless --no-scheduler, it executes runs itself, calling services
      A and B. On SIGINT or SIGTERM it stops claiming, lets runs in flight finish within --grace,
      writes a snapshot, releases the lock and exits 0.
      """
  )

  @Option(help: "The data directory (log, snapshots, lock).")
  var dataDir = "data"

  @Option(help: "Address to bind (an IP address).")
  var host = "127.0.0.1"

  @Option(parsing: .unconditional, help: "Port to listen on; 0 picks a free one (printed as `listening on HOST:PORT`).")
  var port = 4200

  @Option(
    parsing: .unconditional,
    help: "Port of the web UI and its JSON API (same --host); 0 picks a free one (printed as `web UI on URL`).")
  var httpPort = 4280

  @Option(
    help:
      "The URL the web UI is opened by when it is not the bound address (a DNS name, a proxy), e.g. https://gps.example.com: its host is accepted in requests; others are answered 421."
  )
  var publicURL: String?

  @Option(
    parsing: .unconditional,
    help:
      "Following streams (watches, followed history, workers' work signals, the web's events) open at once; a caller gets a quarter. Default: half the process's file limit, at most 10000."
  )
  var maxStreams: Int?

  @Option(
    parsing: .unconditional,
    help:
      "Connections the control API holds at once; beyond, new ones wait until one closes. Default: the process's file limit less 256, at most 100000."
  )
  var maxConnections: Int?

  @Option(
    parsing: .unconditional,
    help:
      "Connections one host (IP address) may hold; its next ones are closed. Default: a quarter of --max-connections."
  )
  var maxConnectionsPerHost: Int?

  @Option(help: "A new connection that has not started a call within this time (TLS, HTTP/2, first call) is closed.")
  var handshakeTimeout = DurationArgument(.seconds(10), text: "10s")

  @Flag(help: "Do not serve the web UI and its JSON API.")
  var noWeb = false

  @Flag(help: "Do not run a scheduler in this process (use `gps scheduler --server ADDR`).")
  var noScheduler = false

  @Option(parsing: .unconditional, help: "Runs the embedded scheduler executes at once.")
  var concurrency = 16

  @Option(name: .customLong("a"), help: "Address of service A.")
  var a = "127.0.0.1:50051"

  @Option(name: .customLong("b"), help: "Address of service B.")
  var b = "127.0.0.1:50052"

  @Option(
    parsing: .unconditional,
    help:
      "How long a scheduler's lease on a run lasts without a heartbeat, e.g. 30s; then the run is Crashed or re-queued.",
    transform: DurationArgument.parse)
  var leaseDuration = DurationArgument(.seconds(30), text: "30s")

  @Option(
    parsing: .unconditional, help: "How long runs in flight may take to finish at shutdown, e.g. 30s.",
    transform: DurationArgument.parse)
  var grace = DurationArgument(.seconds(30), text: "30s")

  @Option(
    parsing: .unconditional,
    help: "The largest parameters a run may have, in bytes of JSON; larger enqueues are refused.")
  var maxParameterBytes = 1 << 20

  @Option(help: "A file of NAME TOKEN lines: only callers with one of the tokens may use the control API.")
  var tokens: String?

  @Option(help: "The server's certificate chain (PEM): serve the control API over TLS (needs --tls-key).")
  var tlsCert: String?

  @Option(help: "The private key of --tls-cert (PEM).")
  var tlsKey: String?

  @Option(
    parsing: .unconditional,
    help:
      "Keep log segments this long, e.g. 90d; older sealed ones the run index covers move to DATA/archive/ (checked every minute). Default: keep all.",
    transform: DurationArgument.parse)
  var retain: DurationArgument?

  @Flag(help: "With --retain: delete the old segments instead of moving them to DATA/archive/.")
  var deleteExpired = false

  @Option(
    parsing: .unconditional,
    help:
      "How long an idempotency key returns its run, e.g. 24h; the same key later creates a new run. Default: for as long as the run is kept.",
    transform: DurationArgument.parse)
  var idempotencyWindow: DurationArgument?

  @Option(
    help:
      "Keep the log in PostgreSQL: postgres://USER@HOST:PORT[,HOST2:PORT2]/DATABASE[?target_session_attrs=read-write&sslmode=…]. Several servers may share one store: one leads, the others stand by. The data directory then holds a local copy of the log and the run index. The password comes from PGPASSFILE or ~/.pgpass, or --store-password-file; never the URL."
  )
  var store: String?

  @Option(help: "With --store: a file whose first line is the database password.")
  var storePasswordFile: String?

  @Option(
    help:
      "With --store: the HOST:PORT of this server's control API that other servers and clients can reach (default: --host and the bound port)."
  )
  var advertise: String?

  @Option(
    parsing: .unconditional,
    help:
      "With --store: how long the leader's lease lasts unrenewed, e.g. 4s; a standby takes over within about this long of the leader's death (renewed every third of it).",
    transform: DurationArgument.parse)
  var storeLease = DurationArgument(.seconds(4), text: "4s")

  @Option(help: "Log level: trace, debug, info, notice, warning, error or critical.")
  var logLevel = "info"

  func validate() throws {
    if store == nil {
      for (option, given) in [
        ("--store-password-file", storePasswordFile != nil), ("--advertise", advertise != nil),
      ] where given {
        throw ValidationError("\(option) needs --store postgres://…")
      }
    }
    if let store {
      do {
        _ = try StoreLocation(url: store)
      } catch {
        throw ValidationError(error.message)
      }
    }
    if !(Duration.milliseconds(500)...Duration.seconds(600)).contains(storeLease.duration) {
      throw ValidationError("--store-lease \(storeLease.text) is out of range; give 500ms to 10m")
    }
    if let advertise {
      do {
        _ = try ServiceAddress(parsing: advertise, what: "--advertise")
      } catch {
        throw ValidationError("\(error)")
      }
    }
    if deleteExpired, retain == nil { throw ValidationError("--delete-expired needs --retain, e.g. --retain 90d") }
    if let idempotencyWindow, idempotencyWindow.duration <= .zero {
      throw ValidationError("--idempotency-window must be longer than 0, e.g. 24h")
    }
    if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("give --tls-cert and --tls-key together") }
    for (option, path) in [("--tls-cert", tlsCert), ("--tls-key", tlsKey)] {
      if let path, !FileManager.default.isReadableFile(atPath: path) {
        throw ValidationError("cannot read \(option) \(path)")
      }
    }
    guard maxParameterBytes >= 2, maxParameterBytes <= 64 << 20 else {
      throw ValidationError("--max-parameter-bytes \(maxParameterBytes) is out of range; give 2 to 67108864 (64 MiB)")
    }
    guard (0...65535).contains(port) else { throw ValidationError("--port \(port) is out of range; give 0 to 65535") }
    if let publicURL {
      guard let url = URL(string: publicURL), ["http", "https"].contains(url.scheme ?? ""), url.host?.isEmpty == false
      else {
        throw ValidationError("--public-url \(publicURL.prefix(200)) is not an http:// or https:// URL with a host")
      }
    }
    if let maxStreams, !(1...1_000_000).contains(maxStreams) {
      throw ValidationError("--max-streams \(maxStreams) is out of range; give 1 to 1000000")
    }
    if let maxConnections, !(1...1_000_000).contains(maxConnections) {
      throw ValidationError("--max-connections \(maxConnections) is out of range; give 1 to 1000000")
    }
    if let maxConnectionsPerHost, !(1...1_000_000).contains(maxConnectionsPerHost) {
      throw ValidationError("--max-connections-per-host \(maxConnectionsPerHost) is out of range; give 1 to 1000000")
    }
    if !(Duration.milliseconds(100)...Duration.seconds(3600)).contains(handshakeTimeout.duration) {
      throw ValidationError("--handshake-timeout \(handshakeTimeout.text) is out of range; give 100ms to 1h")
    }
    guard (0...65535).contains(httpPort) else {
      throw ValidationError("--http-port \(httpPort) is out of range; give 0 to 65535")
    }
    guard concurrency >= 1 else { throw ValidationError("--concurrency must be at least 1") }
    guard leaseDuration.duration >= .milliseconds(100) else {
      throw ValidationError("--lease-duration must be at least 100ms")
    }
    guard Logger.Level(rawValue: logLevel) != nil else {
      throw ValidationError(
        "--log-level '\(logLevel)' is unknown; use trace, debug, info, notice, warning, error or critical")
    }
  }

  /// Raises the soft limit of open files to the hard one; returns the limit and what it was.
  static func raiseFileLimit() -> (limit: Int, raisedFrom: Int?) {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return (1024, nil) }
    let soft = Int(clamping: limit.rlim_cur)
    guard limit.rlim_cur < limit.rlim_max else { return (soft, nil) }
    var raised = limit
    // Linux caps what setrlimit takes at fs.nr_open; an unlimited hard limit is not a number to use.
    raised.rlim_cur = min(limit.rlim_max, 1 << 20)
    guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 else { return (soft, nil) }
    return (Int(clamping: raised.rlim_cur), soft)
  }

  func run() async throws {
    var configuration = ControlServer.Configuration()
    configuration.dataDirectory = dataDir
    configuration.host = host
    configuration.port = port
    configuration.schedulerConcurrency = noScheduler ? nil : concurrency
    configuration.grace = grace.duration
    configuration.queue.leaseDuration = leaseDuration.duration
    configuration.queue.maxParameterBytes = maxParameterBytes
    if let retain { configuration.retention = .init(age: retain.duration, delete: deleteExpired) }
    configuration.queue.idempotencyWindow = idempotencyWindow?.duration
    if let tlsCert, let tlsKey { configuration.tls = (tlsCert, tlsKey) }
    // Every connection and stream holds a descriptor: take what the hard limit allows, and say it.
    let files = Self.raiseFileLimit()
    configuration.streams =
      maxStreams.map { StreamLimits(total: $0, perPrincipal: max(1, $0 / 4)) } ?? StreamLimits(fileLimit: files.limit)
    configuration.connections =
      maxConnections.map { ConnectionLimits(total: $0, perHost: max(1, $0 / 4)) }
      ?? ConnectionLimits(fileLimit: files.limit)
    if let maxConnectionsPerHost {
      configuration.connections.perHost = min(maxConnectionsPerHost, configuration.connections.total)
    }
    configuration.connections.handshakeTimeout = handshakeTimeout.duration
    if let tokens {
      do {
        configuration.tokens = try AccessTokens.load(file: tokens) { warning in
          FileHandle.standardError.write(Data("gps: warning: \(warning)\n".utf8))
        }
      } catch {
        throw CommandFailure("\(error)")
      }
    }
    do {
      try configuration.checkAccess()
    } catch {
      throw CommandFailure("\(error)")
    }
    let metrics = noWeb ? nil : WebMetrics()
    configuration.queue.metrics = metrics?.factory
    configuration.queue.log.lock = commandLock(dataDir)
    configuration.queue.log.lock.role = .server
    let aAddress: ServiceAddress
    let bAddress: ServiceAddress
    do {
      aAddress = try ServiceAddress(parsing: a, what: "--a")
      bAddress = try ServiceAddress(parsing: b, what: "--b")
    } catch {
      throw CommandFailure("\(error)")
    }
    if let store {
      var cluster = StoreConfiguration(
        location: try StoreLocation(url: store),
        password: StorePassword.resolve(passwordFile: storePasswordFile),
        advertise: advertise)
      cluster.lease = storeLease.duration
      configuration.store = cluster
    }
    try prepareDataDirectory(dataDir)
    let logger = bootstrapLogging(label: "gps.server", level: logLevel)
    let started = ContinuousClock.now
    let streams = configuration.streams
    let connections = configuration.connections
    // The reference flow is served by the embedded scheduler like any user's flow: registered
    // with the queue, its steps given the clients of A and B.
    let worker = ControlServer.EmbeddedWorker(registry: .standard) { body in
      try await withServiceClients(a: aAddress, b: bAddress) { clients in try await body(Dependencies(clients)) }
    }
    var server = ControlServer(configuration: configuration, worker: worker, logger: logger) { address, queue in
      let startup = queue.startup
      if !startup.recovery.isClean {
        logger.warning("\(startup.recovery.summary); recorded in the log as a LogTailTruncated event")
      }
      printLine("listening on \(address)")
      if let rebuilt = startup.indexRebuilt {
        logger.warning("\(rebuilt); it was rebuilt from the log")
      }
      let from =
        if let index = queue.indexStatus {
          "run index at event \(index.indexedSequence), \(index.runsInMemory) runs in memory"
        } else {
          "snapshot \(startup.snapshotSequence.map(String.init) ?? "none")"
        }
      // Said once the server opened: a start that fails says only why.
      logger.info(
        "open files: at most \(files.limit)\(files.raisedFrom.map { " (raised from \($0))" } ?? ""); streams: at most \(streams.total), \(streams.perPrincipal) per caller; connections: at most \(connections.total), \(connections.perHost) per host, \(handshakeTimeout.text) to start a call"
      )
      printLine(
        "queue ready in \(seconds(ContinuousClock.now - started)) s: \(queue.counts.total) runs, \(queue.durableSequence) events (\(from), \(startup.replayedEvents) replayed; opening the log \(seconds(startup.openingLog)) s, loading \(seconds(startup.loadingSnapshot)) s)"
      )
    }
    if let metrics {
      var web = WebServer.Configuration()
      web.metrics = metrics
      web.host = host
      web.port = httpPort
      web.publicURL = publicURL.flatMap(URL.init(string:))
      web.tokens = configuration.tokens
      web.tls = configuration.tls
      // The web's connections share the descriptors: a quarter of the control API's; a connection
      // without a request in progress for the handshake timeout is closed.
      web.maxConnections = max(16, connections.total / 4)
      web.idleTimeout = connections.handshakeTimeout
      server.companions.append(
        WebServer(configuration: web, logger: logger) { scheme, address in printLine("web UI on \(scheme)://\(address)")
        })
    }
    let group = ServiceGroup(
      configuration: .init(
        services: [.init(service: server)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
    do {
      try await group.run()
    } catch let error as ControlError {
      throw CommandFailure(error.message)
    } catch let error as QueueError {
      throw CommandFailure(error.message + advice(for: error))
    } catch let error as ServiceAddressError {
      throw CommandFailure(error.message)
    }
  }
}

struct SchedulerCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "scheduler",
    abstract: "Run a scheduler in this process against a running `gps server start`.",
    discussion: """
      Claims runs from the server under a lease, executes their steps against services A and B, and
      reports every attempt back. Several may run at once; each run is executed by one of them. If
      one dies, its runs are Crashed or re-queued (per their policy) once their leases expire.
      """
  )

  @OptionGroup var location: QueueLocation

  @Option(parsing: .unconditional, help: "Runs executed at once.")
  var concurrency = 16

  @Option(name: .customLong("a"), help: "Address of service A.")
  var a = "127.0.0.1:50051"

  @Option(name: .customLong("b"), help: "Address of service B.")
  var b = "127.0.0.1:50052"

  @Option(help: "Names this scheduler in claims and leases (default: scheduler-PID-RANDOM).")
  var id: String?

  @Option(help: "Log level: trace, debug, info, notice, warning, error or critical.")
  var logLevel = "info"

  func validate() throws {
    guard concurrency >= 1 else { throw ValidationError("--concurrency must be at least 1") }
    guard Logger.Level(rawValue: logLevel) != nil else {
      throw ValidationError(
        "--log-level '\(logLevel)' is unknown; use trace, debug, info, notice, warning, error or critical")
    }
  }

  func run() async throws {
    guard let (servers, _) = try location.serverAddresses() else {
      throw CommandFailure(
        "no GPS server is recorded in \(location.dataDir); start one with `gps server start` or pass --server HOST:PORT"
      )
    }
    let aAddress: ServiceAddress
    let bAddress: ServiceAddress
    do {
      aAddress = try ServiceAddress(parsing: a, what: "--a")
      bAddress = try ServiceAddress(parsing: b, what: "--b")
    } catch {
      throw CommandFailure(error.message)
    }
    let logger = bootstrapLogging(label: "gps.scheduler", level: logLevel)
    var options = SchedulerOptions(concurrency: concurrency)
    if let id { options.id = id }
    let schedulerID = options.id
    let server = servers[0]
    try await withControlClient(server, credentials: try location.credentials()) { control in
      // Fail at once, with one line, when nothing listens there (with several, at the first).
      do {
        _ = try await control.listDeployments(.init(), options: failFast)
      } catch {
        if servers.count == 1 { throw describe(error, server: server) }
      }
    }
    try await withServiceClients(a: aAddress, b: bAddress) { clients in
      printLine("scheduler \(schedulerID) working for \(servers.map(\.description).joined(separator: ","))")
      try await Worker(
        servers: servers, credentials: try location.credentials(),
        deployments: Array(DeploymentRegistry.standard.deployments.values),
        dependencies: Dependencies(clients), options: options, logger: logger
      ).serve()
    }
  }
}

/// A duration in seconds with millisecond precision, e.g. `0.123`.
func seconds(_ duration: Duration) -> String {
  let (whole, fraction) = duration.components
  return String(format: "%.3f", Double(whole) + Double(fraction) / 1e18)
}
