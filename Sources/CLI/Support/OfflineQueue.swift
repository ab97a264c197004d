import Foundation
import GPSModel
import PostgresStore
import Queue

/// Opens the queue in `dataDir` without a server (a command holding the lock for a moment): waits
/// for another command that holds it, and reports on stderr what opening repaired.
func openQueueOffline(_ dataDir: String) throws(CommandFailure) -> RunQueue {
  try checkDataDirectory(dataDir, writing: true)
  try refuseStoreCopy(dataDir, change: "changed")
  var options = QueueOptions.dataDirectory
  options.log.lock = commandLock(dataDir)
  let queue = try queueCall { () throws(QueueError) in try RunQueue(directory: dataDir, options: options) }
  reportRecovery(queue.startup.recovery)
  return queue
}

/// A server's copy of a store's log (`--store`) changes only as the store's log does: a command
/// that would write to it or cut it is refused, in one line that says what to do instead.
func refuseStoreCopy(_ dataDir: String, change: String, instead: String? = nil) throws(CommandFailure) {
  guard let data = FileManager.default.contents(atPath: StoreMirror.clusterFile(in: dataDir)) else { return }
  let store = String(decoding: data, as: UTF8.self).split(separator: "\n").dropFirst().first.map(String.init)
  throw CommandFailure(
    "the data directory \(dataDir) is a server's copy of the store \(store ?? "of a cluster")'s log, which is \(change) only through its leader: \(instead ?? "give --server (the leader, or any server of the cluster) instead of --data-dir"); a damaged copy is replaced by starting its server on an empty --data-dir"
  )
}

/// The lock as a short-lived command takes it: says so once if another holder keeps it waiting.
func commandLock(_ dataDir: String) -> LockOptions {
  var lock = LockOptions(role: .command)
  lock.onWaiting = { holder in
    writeStandardError(
      "gps: waiting for \(holder.map { "process \($0)" } ?? "another process") to release \(dataDir)/LOCK…\n")
  }
  return lock
}

/// One line on stderr when opening the log cut off an interrupted append (it is also recorded in
/// the log as a LogTailTruncated event).
func reportRecovery(_ recovery: RecoveryReport) {
  guard !recovery.isClean else { return }
  writeStandardError("gps: warning: \(recovery.summary); recorded in the log (see `gps history replay`)\n")
}

/// What a user can do about a queue error, beyond what the library says.
func advice(for error: QueueError) -> String {
  if let refused = error.refusedEvent {
    return
      "; the log holds event \(refused), which this version of GPS refuses (an older one wrote it?): `gps history verify` names it, and `gps log skip-event \(refused) --reason …` opens the log without it, recording the decision in the log"
  }
  return switch error.code {
  case .dataLost:
    "; restore the missing segment files into log/ from a backup, or accept the loss with `gps log accept-loss` (it is recorded in the log)"
  case .corrupt:
    "; `gps log verify` shows the first problem and `gps log repair` cuts the log there, keeping the removed bytes in a side file"
  case .notFound:
    "; `gps flow-run ls` lists runs"
  case .locked:
    error.message.contains("server process") ? "; stop that server first, or use another --data-dir" : ""
  case .tooLarge:
    "; `gps server start --max-parameter-bytes N` sets the limit (an enqueue without a server uses the default, 1 MiB)"
  default:
    ""
  }
}

/// Makes `path` a usable data directory for `gps server start` (creating it and its parents), or
/// says in one line why it cannot be one.
func prepareDataDirectory(_ path: String) throws(CommandFailure) {
  var isDirectory: ObjCBool = false
  if !FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
    var built = path.hasPrefix("/") ? "" : "."
    for component in path.split(separator: "/") {
      built += "/" + component
      if mkdir(built, 0o755) != 0, errno != EEXIST {
        throw CommandFailure(
          "cannot create the data directory \(path): \(String(cString: strerror(errno))) at \(built); give another --data-dir"
        )
      }
    }
    return
  }
  try checkDataDirectory(path, writing: true)
}

/// One line when `path` exists but cannot be a data directory: a file, or (for a writer) not writable.
func checkDataDirectory(_ path: String, writing: Bool) throws(CommandFailure) {
  var isDirectory: ObjCBool = false
  guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return }
  guard isDirectory.boolValue else {
    throw CommandFailure("the data directory \(path) is a file, not a directory; give another --data-dir")
  }
  guard !writing || access(path, W_OK | X_OK) == 0 else {
    throw CommandFailure(
      "the data directory \(path) is not writable by this user (\(NSUserName())); fix its permissions or give another --data-dir"
    )
  }
}
