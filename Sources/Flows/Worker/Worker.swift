import Foundation
import GPSModel
public import Logging
public import RPC
public import ServiceLifecycle
import UnixSignals

/// Serves deployments to a running `gps server start`: registers them (their definitions and
/// parameter types become events in the server's log), then claims and executes their runs; only
/// theirs. The Swift counterpart of Prefect's `flow.serve(name:)` and of a Temporal worker.
///
/// A ServiceLifecycle `Service`: on graceful shutdown it stops claiming and lets the runs in
/// flight finish; cancelled, it abandons them (their leases expire and their crash policy
/// applies). ``serve()`` runs it until SIGINT or SIGTERM.
public struct Worker: Service {
  /// The servers of the cluster it works for (one, without a store): it follows the one that leads.
  public let servers: [ServiceAddress]
  /// The first of ``servers``.
  public var server: ServiceAddress { servers[0] }
  public let credentials: ControlCredentials
  public let deployments: DeploymentRegistry
  public let dependencies: Dependencies
  public let options: SchedulerOptions
  public let logger: Logger

  /// - Parameters:
  ///   - deployments: what the worker registers and runs.
  ///   - dependencies: what its steps get from ``StepContext/dependency(_:)`` (clients, settings …).
  public init(
    server: ServiceAddress, credentials: ControlCredentials = ControlCredentials(), deployments: [Deployment],
    dependencies: Dependencies = Dependencies(), options: SchedulerOptions = SchedulerOptions(),
    logger: Logger = Logger(label: "gps.worker")
  ) {
    self.init(
      servers: [server], credentials: credentials, deployments: deployments, dependencies: dependencies,
      options: options, logger: logger)
  }

  /// A worker of a cluster's servers (several `gps server start --store …`): its claims,
  /// heartbeats and reports go to the leader, and follow it across a failover, the runs in flight
  /// going on (their leases are in the log, and the new leader honours them).
  public init(
    servers: [ServiceAddress], credentials: ControlCredentials = ControlCredentials(), deployments: [Deployment],
    dependencies: Dependencies = Dependencies(), options: SchedulerOptions = SchedulerOptions(),
    logger: Logger = Logger(label: "gps.worker")
  ) {
    precondition(!servers.isEmpty, "a worker needs at least one server")
    self.servers = servers
    self.credentials = credentials
    self.deployments = DeploymentRegistry(deployments)
    self.dependencies = dependencies
    self.options = options
    self.logger = logger
  }

  public func run() async throws {
    try await withControlServers(servers, credentials: credentials, logger: logger) { servers in
      let queue = RemoteQueue(servers: servers, scheduler: options.id, deployments: deployments.names)
      let scheduler = Scheduler(
        queue: queue, registry: deployments, dependencies: dependencies, options: options, logger: logger)
      try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
          await queue.watchWork { error in
            logger.warning("lost the server's work stream; reconnecting", metadata: ["error": "\(error)"])
          }
        }
        // Returns once drained after a graceful shutdown stopped the claims (or throws); then the
        // work stream ends too.
        try await withGracefulShutdownHandler {
          try await scheduler.run()
        } onGracefulShutdown: {
          logger.info(
            "stopping: no new claims; waiting for runs in flight", metadata: ["runs": "\(scheduler.activeRuns)"])
          scheduler.stopClaiming()
        }
        group.cancelAll()
      }
    }
  }

  /// Runs the worker until SIGINT or SIGTERM, then stops it gracefully.
  public func serve() async throws {
    let group = ServiceGroup(
      configuration: .init(
        services: [.init(service: self)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
    try await group.run()
  }
}
