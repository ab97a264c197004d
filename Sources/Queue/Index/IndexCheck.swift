package import GPSModel

/// `gps history verify`'s check of the run index against the log: every row of the index as of its
/// checkpoint (each verified by its checksum) must be the run the log's replay holds at that
/// sequence, and every run the replay holds must have its row.
package struct IndexCheck: Sendable {
  /// The index's checkpoint: where a replay must stand to compare.
  package let sequence: UInt64
  private let directory: String

  /// The index of `directory`, or nil when it has none (or one of another version: the next start
  /// rebuilds it).
  package init?(directory: String) throws(QueueError) {
    guard try PosixFileSystem().size(of: RunStore.path(in: directory)) != nil else { return nil }
    let store = try RunStore(directory: directory, fileSystem: PosixFileSystem(), schema: false)
    guard try store.formatVersion() == RunStore.formatVersion else { return nil }
    sequence = try store.checkpoint().sequence
    self.directory = directory
  }

  /// What a comparison found.
  package enum Outcome: Sendable, Equatable {
    /// The index holds these runs, each as the log does.
    case agrees(runs: Int)
    /// The first difference.
    case differs(String)
    /// A running server committed past the checkpoint meanwhile: nothing to compare with.
    case moved(to: UInt64)
  }

  /// The index compared with `state`, the replay at ``sequence``.
  package func compare(with state: QueueState) throws(QueueError) -> Outcome {
    let store = try RunStore(directory: directory, fileSystem: PosixFileSystem(), schema: false)
    try store.connection.execute("BEGIN")
    defer { try? store.connection.execute("COMMIT") }
    let checkpoint = try store.checkpoint()
    guard checkpoint.sequence == state.lastSequence else {
      return .moved(to: checkpoint.sequence)
    }
    if checkpoint.counts != state.counts {
      return .differs("the run index counts \(checkpoint.counts) runs by state but the log \(state.counts)")
    }
    if checkpoint.deployments != state.deployments || checkpoint.handOvers != state.handOvers {
      return .differs("the run index's deployments differ from the log's at event \(sequence)")
    }
    var seen = 0
    var difference: String?
    func check(_ run: Run) -> Bool {
      seen += 1
      guard let replayed = state.runs[run.id] else {
        difference = "the run index holds run \(run.id), which the log does not have at event \(sequence)"
        return false
      }
      guard replayed == run else {
        difference =
          "the run index's record of run \(run.id) (\(run.state)) is not the log's (\(replayed.state)) at event \(sequence)"
        return false
      }
      return true
    }
    for run in try store.activeRuns() where !check(run) { return .differs(difference!) }
    try store.forEachTerminalRun(check)
    if let difference { return .differs(difference) }
    guard seen == state.runs.count else {
      return .differs("the run index holds \(seen) runs but the log \(state.runs.count) at event \(sequence)")
    }
    return .agrees(runs: seen)
  }
}
