import ArgumentParser
import Foundation
import GPSModel
import PostgresStore

/// `--store postgres://…` for the commands that read the log: they read a local copy of the
/// store's log, kept between commands under `$XDG_CACHE_HOME/gps` (or `~/.cache/gps`) and brought
/// up to the store's end each time (only the new batches are copied), checked batch by batch.
struct StoreOption: ParsableArguments {
  @Option(
    help:
      "Read the log from PostgreSQL (postgres://USER@HOST:PORT/DATABASE) instead of --data-dir: a local copy under ~/.cache/gps, brought up to date first."
  )
  var store: String?

  @Option(help: "With --store: a file whose first line is the database password (default: PGPASSFILE, ~/.pgpass).")
  var storePasswordFile: String?

  /// The directory to read: `dataDir`, or with `--store` the store's local copy, up to date.
  func directory(orElse dataDir: String) async throws(CommandFailure) -> String {
    guard let store else { return dataDir }
    do throws(QueueError) {
      let opened = try await PostgresStore.open(
        try StoreLocation(url: store), password: StorePassword.resolve(passwordFile: storePasswordFile))
      defer { opened.close() }
      let environment = ProcessInfo.processInfo.environment
      let cache =
        environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
        ?? environment["HOME"].map { $0 + "/.cache" } ?? NSTemporaryDirectory()
      let directory = cache + "/gps/store-" + opened.clusterID
      try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
      try await StoreMirror.catchUp(directory: directory, store: opened)
      return directory
    } catch {
      throw CommandFailure(error.message)
    }
  }
}
