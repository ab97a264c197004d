import Foundation
package import GPSModel
import SwiftProtobuf

extension RunQueue {
  /// Decides, for good, that replays pass over the events at `sequences`: events of the log that
  /// the reducer refuses (an older version of GPS wrote them), which keep the log from opening.
  ///
  /// Each sequence must be one the reducer refuses (checked by replaying the log to it); once every
  /// event after them applies, the decisions go to `log/SKIPPED` and each becomes a
  /// ``Gps_V1_LogEventSkipped`` note in the log. Takes the directory's lock: no server may be
  /// running. Returns the decisions with their notes' sequences.
  package static func skipEvents(
    _ sequences: Set<UInt64>, directory: String, skippedBy: String, reason: String,
    clock: any WallClock = SystemClock(), fileSystem: any FileSystem = PosixFileSystem()
  ) throws(QueueError) -> [SkippedEvents.Decision] {
    guard !sequences.isEmpty else { throw QueueError(code: .invalidArgument, message: "name the events to skip") }
    guard !reason.trimmingCharacters(in: .whitespaces).isEmpty else {
      throw QueueError(code: .invalidArgument, message: "say why with --reason: the decision is recorded in the log")
    }
    try EventLimits.check(text: reason, "reason")
    let logDirectory = directory + "/log"
    do {
      let lock = try DirectoryLock(directory: directory)
      defer { lock.unlock() }
      var skipped = try SkippedEvents.read(logDirectory: logDirectory, fileSystem: fileSystem)
      if let known = skipped.decisions.first(where: { sequences.contains($0.sequence) }) {
        throw QueueError(
          code: .invalidArgument,
          message: "\(known.eventDescription) is skipped already (by \(known.skippedBy) at \(known.skippedAt))")
      }
      let snapshots = SnapshotStore(directory: directory, fileSystem: fileSystem)
      let found: [UInt64: SkippedEvents.Decision]
      do throws(QueueError) {
        // From the log's first event when it has it: a snapshot would hide the events it covers.
        let reader = LogReader(directory: directory, fileSystem: fileSystem)
        if try reader.readsFromStart() {
          var state = QueueState()
          state.skipping.candidates = sequences
          try replay(reader, into: &state)
          found = state.refusedCandidates
        } else {
          let loaded = try load(
            directory: directory, snapshots: snapshots, fileSystem: fileSystem, skipping: sequences)
          found = loaded.state.refusedCandidates
        }
      } catch {
        guard let refused = error.refusedEvent else { throw error }
        let all = (sequences.sorted() + [refused]).map(String.init).joined(separator: " ")
        throw QueueError(
          code: .illegalTransition,
          message:
            "the reducer refuses event \(refused) too (\(error.message)), so the log would still not open; name it as well: `gps log skip-event \(all) --reason …`"
        )
      }
      if let missed = sequences.sorted().first(where: { found[$0] == nil }) {
        throw QueueError(
          code: .invalidArgument,
          message:
            "event \(missed) is not replayed (a snapshot covers it, or the log does not hold it), so nothing keeps the log from opening there"
        )
      }
      let now = clock.now().description
      for sequence in sequences.sorted() {
        var decision = found[sequence]!
        decision.skippedBy = skippedBy
        decision.skippedAt = now
        decision.reason = reason
        skipped.decisions.append(decision)
      }
      skipped = SkippedEvents(decisions: skipped.decisions)
      try skipped.write(logDirectory: logDirectory, fileSystem: fileSystem)
      try fileSystem.syncDirectory(logDirectory)
    }
    // Opening writes the notes (and brings the run index up to date past the skipped events).
    let queue = try RunQueue(
      directory: directory, options: .dataDirectory, clock: clock, fileSystem: fileSystem)
    queue.close()
    return try SkippedEvents.read(logDirectory: logDirectory, fileSystem: fileSystem).decisions.filter {
      sequences.contains($0.sequence)
    }
  }

  /// Writes the `LogEventSkipped` note of each decision in `log/SKIPPED` that has none yet.
  func recordSkipNotes() throws(QueueError) {
    let logDirectory = log.logDirectory
    var skipped = try SkippedEvents.read(logDirectory: logDirectory, fileSystem: fileSystem)
    guard skipped.decisions.contains(where: { $0.noteSequence == nil }) else { return }
    for index in skipped.decisions.indices where skipped.decisions[index].noteSequence == nil {
      let decision = skipped.decisions[index]
      skipped.decisions[index].noteSequence = try recordNote(
        .logEventSkipped(
          .with {
            $0.sequence = decision.sequence
            $0.eventType = decision.eventType
            $0.runID = Data(RunID(decision.run)?.bytes ?? [])
            $0.refusal = decision.refusal
            $0.skippedBy = decision.skippedBy
            $0.reason = decision.reason
          }))
    }
    try skipped.write(logDirectory: logDirectory, fileSystem: fileSystem)
  }
}
