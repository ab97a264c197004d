package import GPSModel

/// A point of the log's history: after a given event, or as of a wall-clock time.
package enum PointInTime: Sendable, Hashable {
  /// After the event with this sequence.
  case sequence(UInt64)
  /// After the last event at or before this time.
  case time(Timestamp)
}

/// Reads the queue's history from the log, without the lock (a server may be writing): every event,
/// and the state of the queue or of one run at any point.
package struct QueueHistory: Sendable {
  package let directory: String
  let fileSystem: any FileSystem

  package init(directory: String, fileSystem: any FileSystem = PosixFileSystem()) {
    self.directory = directory
    self.fileSystem = fileSystem
  }

  /// Calls `body` with every event from `sequence` on, in order, until it returns false.
  package func events(from sequence: UInt64 = 1, _ body: (UInt64, RunEvent) throws -> Bool) throws {
    struct Stop: Error {}
    do {
      try LogReader(directory: directory, fileSystem: fileSystem).read(from: sequence) { record in
        guard try body(record.sequence, try RunEvent(record)) else { throw Stop() }
      }
    } catch is Stop {}
  }

  /// The state in the newest snapshot that matches the log, or nil: where replay begins for a log
  /// whose head was accepted as lost (its events before the anchor are gone).
  package func newestSnapshotState() throws(QueueError) -> QueueState? {
    let snapshots = SnapshotStore(directory: directory, fileSystem: fileSystem)
    guard
      let snapshot = try snapshots.loadNewest(matching: LogReader(directory: directory, fileSystem: fileSystem))
        .snapshot,
      let decoded = QueueState(snapshotPayload: snapshot.payload), decoded.lastSequence == snapshot.lastSequence
    else { return nil }
    return decoded
  }

  /// The queue's state at `point`: the newest snapshot that is not past it, plus the events after.
  /// - Parameter progress: called every few thousand events replayed with the last sequence
  ///   applied (for a progress bar).
  package func state(at point: PointInTime, progress: ((UInt64) -> Void)? = nil) throws(QueueError) -> QueueState {
    var state = try start(at: point)
    try replay(into: &state, until: point, progress: progress)
    return state
  }

  /// Where a replay to `point` begins: the newest snapshot that is not past it, or the empty
  /// state when the log holds its start.
  func start(at point: PointInTime) throws(QueueError) -> QueueState {
    let snapshots = SnapshotStore(directory: directory, fileSystem: fileSystem)
    var state = QueueState()
    if let snapshot = try snapshots.loadNewest(matching: LogReader(directory: directory, fileSystem: fileSystem))
      .snapshot,
      let decoded = QueueState(snapshotPayload: snapshot.payload), decoded.lastSequence == snapshot.lastSequence
    {
      if point.includes(sequence: decoded.lastSequence, time: decoded.lastTime) { state = decoded }
    }
    if state.lastSequence == 0, try !LogReader(directory: directory, fileSystem: fileSystem).readsFromStart(),
      let anchor = try LogAnchor.read(logDirectory: directory + "/log", fileSystem: fileSystem)
    {
      throw anchor.noSnapshotCovers
    }
    return state
  }

  /// Applies to `state` the events after its last one, up to `point`.
  func replay(
    into state: inout QueueState, until point: PointInTime, progress: ((UInt64) -> Void)?
  ) throws(QueueError) {
    try replay(into: &state, until: point) { state in
      if state.lastSequence % 4096 == 0 { progress?(state.lastSequence) }
    }
  }

  /// Applies to `state` the events after its last one, up to `point`, calling `applied` after
  /// each.
  func replay(
    into state: inout QueueState, until point: PointInTime,
    applied: (inout QueueState) throws(QueueError) -> Void
  ) throws(QueueError) {
    state.skip(try SkippedEvents.read(logDirectory: directory + "/log", fileSystem: fileSystem))
    do {
      try events(from: state.lastSequence + 1) { sequence, event in
        guard point.includes(sequence: sequence, time: event.time) else { return false }
        try state.apply(event, sequence: sequence)
        try applied(&state)
        return true
      }
    } catch let error as QueueError {
      throw error
    } catch {
      throw QueueError(code: .io, message: "reading the log failed: \(error)", cause: error)
    }
  }
}
