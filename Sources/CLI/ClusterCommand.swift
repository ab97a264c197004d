import ArgumentParser
import Control
import Flows
import Foundation
import GPSModel
import PostgresStore

struct ClusterCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "cluster",
    abstract: "The servers that share a PostgreSQL store.",
    subcommands: [ClusterStatus.self]
  )
}

struct ClusterStatus: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "status",
    abstract: "The leader, the log's end, and every server with its role, epoch, last heartbeat and lag.",
    discussion: """
      Reads the store's registry (each server writes its row every third of its lease):
      `--store postgres://…` asks the database itself, so it answers while no server runs;
      otherwise a server of the cluster is asked (`--server A,B`, GPS_SERVER, or the one recorded
      in --data-dir). The same is `GET /api/cluster` on any server's web port.
      """
  )

  @Option(help: "The store: postgres://USER@HOST:PORT[,HOST2:PORT2]/DATABASE (read directly, no server asked).")
  var store: String?

  @Option(help: "With --store: a file whose first line is the database password (default: PGPASSFILE or ~/.pgpass).")
  var storePasswordFile: String?

  @Option(help: "table or json.")
  var output = OutputFormat.table

  @OptionGroup var location: QueueLocation

  func run() async throws {
    let cluster: Gps_V1_ClusterInfo
    if let store {
      cluster = try await readStore(store)
    } else {
      cluster = try await askServer()
    }
    if output == .json {
      printLine(cluster.json.prettyText)
      return
    }
    let leader = cluster.leader
    printLine(
      leader.leaseLive
        ? "leader: \(leader.address.isEmpty ? leader.serverID : leader.address) at epoch \(leader.epoch); the log ends at sequence \(cluster.lastSequence)"
        : "no leader (the lease of epoch \(leader.epoch) ran out); the log ends at sequence \(cluster.lastSequence)")
    var rows = [["SERVER", "ADDRESS", "ROLE", "EPOCH", "APPLIED", "LAG", "HEARTBEAT"]]
    for server in cluster.servers {
      rows.append([
        String(server.serverID.prefix(8)) + (server.answering ? "*" : ""),
        server.address.isEmpty ? "-" : server.address, server.role, "\(server.epoch)", "\(server.lastSequence)",
        "\(server.lagEvents) events, \(String(format: "%.0f", server.lagMilliseconds)) ms",
        String(format: "%.1f s ago", server.heartbeatAgeSeconds),
      ])
    }
    for line in table(rows) { printLine(line) }
  }

  /// The registry as the database holds it.
  func readStore(_ url: String) async throws -> Gps_V1_ClusterInfo {
    guard location.serverList == nil else {
      throw CommandFailure("give --store or --server, not both: --store reads the registry in PostgreSQL itself")
    }
    do throws(QueueError) {
      let opened = try await PostgresStore.open(
        try StoreLocation(url: url), password: StorePassword.resolve(passwordFile: storePasswordFile))
      defer { opened.close() }
      return Gps_V1_ClusterInfo(try await opened.cluster())
    } catch {
      throw CommandFailure(error.message)
    }
  }

  /// The registry as a server of the cluster reads it (it marks itself with `*`).
  func askServer() async throws -> Gps_V1_ClusterInfo {
    do {
      return try await location.route().run { control in
        try await control.getCluster(Gps_V1_GetClusterRequest(), options: failFast)
      } viaLog: {
        throw CommandFailure(
          "no server answers for \(location.dataDir): give --server HOST:PORT[,HOST2:PORT2] or --store postgres://…")
      }
    } catch let failure as QueueRoute.ServerError {
      throw describe(failure.error, server: failure.server)
    }
  }
}
