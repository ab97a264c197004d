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

/// The reads of `gps flow-run` and `gps deployment`, asked the same way whether the server
/// answers or (none running) the queue's files do; over the files they are the engine's own reads
/// (``QueueReads``), so both answers come from the same code.
protocol QueueAnswers: Sendable {
  func listRuns(_ request: Gps_V1_ListRunsRequest) async throws -> Gps_V1_ListRunsResponse
  func getRun(_ request: Gps_V1_GetRunRequest) async throws -> Gps_V1_RunInfo
  /// Every event of `run`, in order.
  func events(of run: Gps_V1_RunInfo) async throws -> [Gps_V1_HistoryEvent]
  func listDeployments(_ request: Gps_V1_ListDeploymentsRequest) async throws -> Gps_V1_ListDeploymentsResponse
  func getDeployment(_ request: Gps_V1_GetDeploymentRequest) async throws -> Gps_V1_DeploymentInfo
  /// The types of the deployments, to show results as JSON (none when they cannot be read).
  func resultTypes() async -> ResultTypes
}

/// The server's answers.
struct ServerAnswers: QueueAnswers {
  let control: ControlClient

  func listRuns(_ request: Gps_V1_ListRunsRequest) async throws -> Gps_V1_ListRunsResponse {
    try await control.listRuns(request, options: failFast)
  }

  func getRun(_ request: Gps_V1_GetRunRequest) async throws -> Gps_V1_RunInfo {
    try await control.getRun(request, options: failFast)
  }

  func events(of run: Gps_V1_RunInfo) async throws -> [Gps_V1_HistoryEvent] {
    try await control.readHistory(
      .with {
        $0.runID = run.id
        $0.fromSequence = run.firstSequence
      }
    ) { response in
      var events: [Gps_V1_HistoryEvent] = []
      for try await event in response.messages { events.append(event) }
      return events
    }
  }

  func listDeployments(_ request: Gps_V1_ListDeploymentsRequest) async throws -> Gps_V1_ListDeploymentsResponse {
    try await control.listDeployments(request, options: failFast)
  }

  func getDeployment(_ request: Gps_V1_GetDeploymentRequest) async throws -> Gps_V1_DeploymentInfo {
    try await control.getDeployment(request, options: failFast)
  }

  func resultTypes() async -> ResultTypes {
    guard let listed = try? await listDeployments(.with { $0.withDefinitions = true }) else { return .none }
    return ResultTypes(listed.deployments.map(\.definition))
  }
}

/// The answers of the queue's files, read without the lock: the engine's reads over a
/// ``QueueReader``, its errors said as the CLI says them.
struct FileAnswers: QueueAnswers {
  let reads: QueueReads

  init(_ reader: QueueReader) { reads = QueueReads(queue: reader) }

  func listRuns(_ request: Gps_V1_ListRunsRequest) throws -> Gps_V1_ListRunsResponse {
    try rpcCall { () throws(RPCError) in try reads.listRuns(request) }
  }

  func getRun(_ request: Gps_V1_GetRunRequest) throws -> Gps_V1_RunInfo {
    try rpcCall { () throws(RPCError) in try reads.runInfo(request) }
  }

  func events(of run: Gps_V1_RunInfo) async throws -> [Gps_V1_HistoryEvent] {
    let history = try rpcCall { () throws(RPCError) in
      try reads.history(
        .with {
          $0.runID = run.id
          $0.fromSequence = run.firstSequence
        })
    }
    var events: [Gps_V1_HistoryEvent] = []
    do {
      for try await event in history { events.append(event) }
    } catch let error as RPCError {
      throw offlineFailure(error)
    }
    return events
  }

  func listDeployments(_ request: Gps_V1_ListDeploymentsRequest) -> Gps_V1_ListDeploymentsResponse {
    reads.listDeployments(request)
  }

  func getDeployment(_ request: Gps_V1_GetDeploymentRequest) throws -> Gps_V1_DeploymentInfo {
    do throws(FlowsError) {
      return try reads.deployment(request)
    } catch {
      throw CommandFailure(error.message + "; `gps deployment ls` lists them")
    }
  }

  func resultTypes() -> ResultTypes { reads.queue.withState { ResultTypes(state: $0) } }
}

/// Runs `body` against the server; if the recorded server is gone, against the queue's files.
/// With `--store`: against the store's log (a local copy, brought up to date), no server asked.
func query<T: Sendable>(
  _ location: QueueLocation, store: StoreOption? = nil, _ body: (any QueueAnswers) async throws -> T
) async throws -> T {
  if let store, store.store != nil {
    guard location.serverList == nil else {
      throw CommandFailure("give --store or --server, not both: --store reads the log in PostgreSQL itself")
    }
    let directory = try await store.directory(orElse: location.dataDir)
    return try await body(FileAnswers(try readQueue(directory)))
  }
  do {
    return try await location.route().run { control in
      try await body(ServerAnswers(control: control))
    } viaLog: {
      let reader = try readQueue(location.dataDir)
      do {
        return try await body(FileAnswers(reader))
      } catch  where "\(error)".contains(QueueError.runIndexDamage) {
        // A row that fails its checksum: never an answer. The log answers instead.
        writeStandardError(
          "gps: warning: \(error); answering from the log instead (the next `gps server start` rebuilds the index)\n")
        let reader = try queueCall { () throws(QueueError) in
          try QueueReader.ignoringIndex(directory: location.dataDir)
        }
        return try await body(FileAnswers(reader))
      }
    }
  } catch let failure as QueueRoute.ServerError {
    throw describe(failure.error, server: failure.server)
  }
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
