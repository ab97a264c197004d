import Foundation
package import GPSModel
import Logging
import NIOCore
import PostgresNIO
package import Queue
import Synchronization

/// The log's commits into the store under one leader's epoch (``LogOptions/store``).
///
/// On the log's writer thread: the insert goes straight to the open connection and the thread
/// waits for its answer (no task per batch); anything else (no connection, a lost one, a refusal)
/// takes the slow path, which reconnects, learns whether a cut-off batch was stored, and says why
/// one was refused. One watchdog cuts off a commit that hangs (a partition TCP has not noticed):
/// dropping the connection ends the statement as lost, and the slow path learns whether it landed.
package struct EpochWriter: BatchStore, ArchiveStore {
  package let store: PostgresStore
  package let epoch: Int64
  package let serverID: String
  /// How long one commit may take before the writer gives up on it (and learns whether it landed).
  package let timeout: Duration
  private let watchdog: Watchdog

  package init(store: PostgresStore, epoch: Int64, serverID: String, timeout: Duration = .seconds(10)) {
    self.store = store
    self.epoch = epoch
    self.serverID = serverID
    self.timeout = timeout
    watchdog = Watchdog(store: store, timeout: timeout)
  }

  package func commit(_ batch: SealedBatch) throws(QueueError) {
    watchdog.started()
    defer { watchdog.ended() }
    var uncertain = false
    if let connection = store.openWriter {
      // Waited for `timeout` at most: a query on a connection that is going away can be left
      // unanswered for good, and the log's writer must not wait for it forever.
      let answered = DispatchSemaphore(value: 0)
      let answer = Mutex<Result<PostgresQueryResult, any Error>?>(nil)
      connection.query(PostgresStore.insertion(batch, epoch: epoch, serverID: serverID), logger: store.logger)
        .whenComplete { result in
          answer.withLock { $0 = result }
          answered.signal()
        }
      let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
      switch answered.wait(timeout: .now() + seconds) == .timedOut ? nil : answer.withLock({ $0 }) {
      case .success(let result) where result.rows.count == 1:
        return
      case .success:
        break
      case .failure(let error):
        store.drop("writer")
        // Refused by the server: the slow path says why; cut off: it learns whether it landed.
        uncertain = PostgresStore.isConnectionLoss(error)
      case nil:
        PostgresStore.dispose(connection)
        store.drop("writer")
        uncertain = true
      }
    }
    let (store, epoch, serverID, timeout) = (store, epoch, serverID, timeout)
    try Self.waitFor { [uncertain] () async throws(QueueError) in
      try await store.insert(batch, epoch: epoch, serverID: serverID, patience: timeout, uncertain: uncertain)
    }
  }

  /// Runs `body` in a task and blocks this thread until it ends. The task runs on a thread of its
  /// own (``BridgeExecutor``), never on the cooperative pool: the caller may be a thread of that
  /// pool, and a pool whose threads all wait here would never run the task.
  static func waitFor<T: Sendable>(_ body: @escaping @Sendable () async throws(QueueError) -> T) throws(QueueError) -> T
  {
    let outcome = Mutex<Result<T, QueueError>?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task(executorPreference: BridgeExecutor.shared) {
      let result: Result<T, QueueError>
      do throws(QueueError) {
        result = .success(try await body())
      } catch {
        result = .failure(error)
      }
      outcome.withLock { $0 = result }
      done.signal()
    }
    done.wait()
    return try outcome.withLock { $0! }.get()
  }

  /// Drops the writer's connection when a commit has been under way for longer than `timeout`;
  /// one thread per writer, gone with it.
  final class Watchdog: @unchecked Sendable {
    private let since = Mutex<ContinuousClock.Instant?>(nil)

    init(store: PostgresStore, timeout: Duration) {
      let thread = Thread { [weak self] in
        while let watchdog = self {
          let overdue = watchdog.since.withLock { $0.map { ContinuousClock.now - $0 > timeout } ?? false }
          if overdue {
            store.drop("writer")
            watchdog.since.withLock { $0 = nil }
          }
          Thread.sleep(forTimeInterval: 0.25)
        }
      }
      thread.name = "gps-store-watchdog"
      thread.start()
    }

    func started() { since.withLock { $0 = .now } }
    func ended() { since.withLock { $0 = nil } }
  }
}

// Archives of the store's log, under this writer's epoch (``ArchiveStore``).
extension EpochWriter {
  package func archiveLimit() throws(QueueError) -> UInt64? {
    try Self.waitFor { [store] () async throws(QueueError) in try await store.standbysHave() }
  }

  package func anchor() throws(QueueError) -> (anchor: LogAnchor, deleted: Bool)? {
    try Self.waitFor { [store] () async throws(QueueError) in try await store.anchor() }
  }

  package func archiveIntent() throws(QueueError) -> ArchiveIntent? {
    try Self.waitFor { [store] () async throws(QueueError) in try await store.archiveIntent() }
  }

  package func recordArchiveIntent(_ intent: ArchiveIntent?) throws(QueueError) {
    try Self.waitFor { [store, epoch, serverID] () async throws(QueueError) in
      try await store.recordArchiveIntent(intent, epoch: epoch, serverID: serverID)
    }
  }

  package func commitArchive(anchor: LogAnchor, deleted: Bool, checkpointFile: String) throws(QueueError) {
    try Self.waitFor { [store, epoch, serverID] () async throws(QueueError) in
      try await store.commitArchive(
        anchor: anchor, deleted: deleted, checkpointFile: checkpointFile, epoch: epoch, serverID: serverID)
    }
  }
}

/// The executor of the tasks blocking callers wait for (``EpochWriter/waitFor(_:)``): one thread
/// that runs their jobs in order. The jobs only start queries and take their answers (postgres-nio
/// does the I/O on its event loops), so one thread serves every caller.
final class BridgeExecutor: TaskExecutor, @unchecked Sendable {
  static let shared = BridgeExecutor()
  private let condition = NSCondition()
  private var jobs: [UnownedJob] = []

  private init() {
    let thread = Thread { [self] in runJobs() }
    thread.name = "gps-store-bridge"
    thread.start()
  }

  func enqueue(_ job: consuming ExecutorJob) {
    let job = UnownedJob(job)
    condition.lock()
    jobs.append(job)
    condition.signal()
    condition.unlock()
  }

  private func runJobs() {
    while true {
      condition.lock()
      while jobs.isEmpty { condition.wait() }
      let ready = jobs
      jobs.removeAll(keepingCapacity: true)
      condition.unlock()
      for job in ready { job.runSynchronously(on: asUnownedTaskExecutor()) }
    }
  }
}
