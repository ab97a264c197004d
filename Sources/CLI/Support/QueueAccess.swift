import ArgumentParser
import Control
import Flows
import Foundation
import GPSModel
import GRPCCore
import Queue
import RPC
import SwiftProtobuf

// How a command reaches the queue: through the server, or (none running) over the log itself.

/// Runs `body` against the server; if the recorded server is gone, answers from the log instead.
func query<T: Sendable>(
  _ location: QueueLocation, server: (ControlClient) async throws -> T, log: (QueueReader) throws -> T
) async throws -> T {
  do {
    return try await location.route().run(viaServer: server) {
      let reader = try readQueue(location.dataDir)
      do {
        return try log(reader)
      } catch  where "\(error)".contains(QueueError.runIndexDamage) {
        // A row that fails its checksum: never an answer. The log answers instead.
        writeStandardError(
          "gps: warning: \(error); answering from the log instead (the next `gps server start` rebuilds the index)\n")
        return try log(
          try queueCall { () throws(QueueError) in try QueueReader.ignoringIndex(directory: location.dataDir) })
      }
    }
  } catch let failure as QueueRoute.ServerError {
    throw describe(failure.error, server: failure.server)
  }
}

/// The types of the server's deployments, to show results as JSON (none when it cannot say).
func resultTypes(_ control: ControlClient) async -> ResultTypes {
  guard
    let listed = try? await control.listDeployments(.with { $0.withDefinitions = true }, options: failFast)
  else { return .none }
  return ResultTypes(listed.deployments.map(\.definition))
}

/// Fails with one line unless `dataDir` holds a queue.
func requireQueue(_ dataDir: String) throws(CommandFailure) {
  try checkDataDirectory(dataDir, writing: false)
  guard FileManager.default.fileExists(atPath: dataDir + "/log") else {
    throw CommandFailure(
      "no queue in \(dataDir) (it has no log/); give --data-dir or start one with `gps server start`")
  }
}

/// The queue as it is now, read from its files without the lock: the run index and the log after
/// it, whose reads check every batch they read (the older segments are the server's background
/// check's and `gps log verify`'s: reading them all would make every answer as slow as the
/// history is long). Without a usable index the whole log is replayed, and damage anywhere in it
/// is reported on stderr first (the answer may come from parts that never read the damaged one).
func readQueue(_ dataDir: String) throws -> QueueReader {
  try requireQueue(dataDir)
  if let queue = try queueCall({ () throws(QueueError) in try QueueReader.fromIndex(directory: dataDir) }) {
    return queue
  }
  let check = try queueCall { () throws(QueueError) in try LogVerifier(directory: dataDir).verify(thorough: false) }
  if let problem = check.problem, check.missing != nil {
    throw CommandFailure(problem + advice(for: QueueError(code: .dataLost, message: problem)))
  } else if let problem = check.problem {
    writeStandardError(
      "gps: warning: the log in \(dataDir) is damaged: \(problem); this answer may be incomplete; `gps log verify` checks it, `gps log repair` cuts it there\n"
    )
  }
  return try queueCall { () throws(QueueError) in try QueueReader(directory: dataDir) }
}

func rpcCall<T>(_ body: () throws(RPCError) -> T) throws(CommandFailure) -> T {
  do {
    return try body()
  } catch {
    throw offlineFailure(error)
  }
}

/// One line for an error of a command run on the log without a server.
func offlineFailure(_ error: RPCError) -> CommandFailure {
  let hint = error.code == .notFound && error.message.hasPrefix("no run") ? "; `gps flow-run ls` lists runs" : ""
  return CommandFailure(error.message + hint)
}

/// A command that changes the queue: through the server, or (none running) through the same
/// engine over the log, taking the data directory's lock for a moment.
func change<T: Sendable>(
  _ location: QueueLocation, server: (ControlClient) async throws -> T, offline: (Engine) async throws -> T
) async throws -> T {
  do {
    return try await location.route().run {
      try await server($0)
    } viaLog: {
      try requireQueue(location.dataDir)
      let queue = try openQueueOffline(location.dataDir)
      defer { queue.close() }
      do {
        return try await offline(Engine(queue: queue))
      } catch let error as QueueError {
        throw CommandFailure(error.message + advice(for: error))
      } catch let error as RPCError {
        throw offlineFailure(error)
      }
    }
  } catch let failure as QueueRoute.ServerError {
    throw describe(failure.error, server: failure.server)
  }
}
