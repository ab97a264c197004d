package import GPSModel
import Queue

/// Makes `path` hold an empty queue, as `gps server start` leaves it, so that offline commands
/// (which refuse a directory without a queue) accept it.
package func createQueue(at path: String) throws {
  try RunQueue(directory: path).close()
}

/// Creates an empty queue at `path` with these deployments registered (as a worker would).
package func createQueue(at path: String, registering definitions: [DeploymentDefinition]) async throws {
  let queue = try RunQueue(directory: path)
  defer { queue.close() }
  _ = try await queue.register(definitions, worker: "test", by: "test")
}

/// Every event of the log in the data directory `data`, with its sequence, read-only.
package func loggedEvents(in data: String) throws -> [(UInt64, RunEvent)] {
  var events: [(UInt64, RunEvent)] = []
  try QueueHistory(directory: data).events { sequence, event in
    events.append((sequence, event))
    return true
  }
  return events
}
