package import GPSModel
import Synchronization

extension RunQueue {
  // MARK: A standby of a store

  static func standbyRefusal(leader: String?) -> QueueError {
    var error = QueueError(
      code: .notLeader,
      message:
        "this server is a standby: \(leader.map { "the leader, \($0), takes writes" } ?? "no server leads the store right now; retry in a few seconds")"
    )
    error.leader = leader
    return error
  }

  /// What a standby answers a command (nil: this queue leads).
  package var standbyRefusal: QueueError? {
    locked.withLock { locked in locked.standbyOf.map { Self.standbyRefusal(leader: $0) } }
  }

  /// The failure that stopped the queue (a write the log could not make durable), if one did.
  package var failure: QueueError? { locked.withLock { $0.lifecycle.failure } }

  /// Whether the queue is a standby (it refuses commands and follows the store's batches).
  package var isStandby: Bool { locked.withLock { $0.standbyOf != nil } }

  /// The sequence the next batch from the store must begin at.
  package var followingFrom: UInt64 { locked.withLock { $0.nextSequence } }

  /// Names the leader a standby's refusals send writers to.
  package func setLeader(_ address: String?) {
    locked.withLock { locked in
      if locked.standbyOf != nil { locked.standbyOf = .some(address) }
    }
  }

  /// Applies batches the leader committed to the store, in order, each continuing the last: their
  /// events to the state (by the reducer, as a replay does), their frames, as they are, to the
  /// data directory's copy of the log. Only a standby follows.
  package func follow(_ batches: [SealedBatch]) throws(QueueError) {
    guard !batches.isEmpty else { return }
    try locked.withLock { locked throws(QueueError) in
      try locked.lifecycle.admit()
      guard locked.standbyOf != nil else {
        throw QueueError(code: .invalidArgument, message: "only a standby follows the store's batches")
      }
      for batch in batches {
        guard batch.firstSequence == locked.nextSequence else {
          throw QueueError(
            code: .corrupt,
            message:
              "the store's batch begins at sequence \(batch.firstSequence) but this server's log continues at \(locked.nextSequence)"
          )
        }
        var state = locked.state
        for (offset, record) in try batch.records().enumerated() {
          let sequence = batch.firstSequence + UInt64(offset)
          try state.apply(try RunEvent(LogRecord(sequence: sequence, payload: record)), sequence: sequence)
        }
        try log.submit(sealed: batch) { [self] result in
          switch result {
          case .success:
            durableWaiters.advance(to: log.lastSequence)
            indexer?.wake()
          case .failure(let error):
            self.locked.withLock { $0.lifecycle.fail(error) }
            durableWaiters.fail()
          }
        }
        locked.state = state
        locked.nextSequence = batch.lastSequence + 1
        locked.eventsSinceSnapshot += Int(batch.lastSequence - batch.firstSequence + 1)
      }
    }
  }

  /// The standby becomes the leader: its commands are accepted and every batch it writes is
  /// committed to `store` first. The caller holds the lead (its epoch is in `store`) and has
  /// followed every batch of the store. Leases held on runs get a full duration from now, as at a
  /// restart; workers' heartbeats and reports then go on here.
  package func promote(committingTo store: any BatchStore) {
    log.commit(to: store)
    locked.withLock { locked in
      locked.standbyOf = nil
      locked.index = ReadyIndex(
        state: locked.state, now: clock.now(), lateAfter: options.lateAfter, grace: options.leaseDuration)
      for signal in locked.wakeSignals { signal.signal() }
    }
  }
}
