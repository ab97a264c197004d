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
      `--store postgres://…` asks the database itself, so it answers while no server runs.
      The same is `GET /api/cluster` on any server's web port.
      """
  )

  @Option(help: "The store: postgres://USER@HOST:PORT[,HOST2:PORT2]/DATABASE.")
  var store: String

  @Option(help: "A file whose first line is the database password (default: PGPASSFILE or ~/.pgpass).")
  var storePasswordFile: String?

  @Option(help: "table or json.")
  var output = OutputFormat.table

  func run() async throws {
    let cluster: PostgresStore.Cluster
    do throws(QueueError) {
      let opened = try await PostgresStore.open(
        try StoreLocation(url: store), password: StorePassword.resolve(passwordFile: storePasswordFile))
      defer { opened.close() }
      cluster = try await opened.cluster()
    } catch {
      throw CommandFailure(error.message)
    }
    if output == .json {
      printLine(cluster.json().prettyText)
      return
    }
    let leader = cluster.leader
    printLine(
      leader.live
        ? "leader: \(leader.address.isEmpty ? leader.serverID : leader.address) at epoch \(leader.epoch); the log ends at sequence \(cluster.lastSequence)"
        : "no leader (the lease of epoch \(leader.epoch) ran out); the log ends at sequence \(cluster.lastSequence)")
    var rows = [["SERVER", "ADDRESS", "ROLE", "EPOCH", "APPLIED", "LAG", "HEARTBEAT"]]
    for member in cluster.members {
      let report = member.report
      rows.append([
        String(report.serverID.prefix(8)), report.address.isEmpty ? "-" : report.address, report.role,
        "\(report.epoch)", "\(report.lastSequence)",
        "\(member.lagEvents) events, \(String(format: "%.0f", member.lagMilliseconds)) ms",
        String(format: "%.1f s ago", member.heartbeatAge),
      ])
    }
    for line in table(rows) { printLine(line) }
  }
}
