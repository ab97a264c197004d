import GPSModel
import Synchronization

/// Tasks waiting until the log holds a given event durably; resumed as group commits complete.
final class DurableWaiters: Sendable {
  private struct Waiter {
    var sequence: UInt64
    var continuation: CheckedContinuation<Void, Never>
  }

  private struct State {
    var waiters: [UInt64: Waiter] = [:]
    var nextID: UInt64 = 0
    var durable: UInt64 = 0
    var stopped = false
  }

  private let state = Mutex(State())

  /// Returns once `durable()` reaches `sequence`, or when stopped or cancelled.
  func wait(for sequence: UInt64, durable: () -> UInt64) async {
    let id = state.withLock { state -> UInt64 in
      state.nextID += 1
      return state.nextID
    }
    await withTaskCancellationHandler {
      await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let now = durable()
        let resumeNow = state.withLock { state -> Bool in
          state.durable = max(state.durable, now)
          if state.stopped || state.durable >= sequence || Task.isCancelled { return true }
          state.waiters[id] = Waiter(sequence: sequence, continuation: continuation)
          return false
        }
        if resumeNow { continuation.resume() }
      }
    } onCancel: {
      state.withLock { $0.waiters.removeValue(forKey: id) }?.continuation.resume()
    }
  }

  /// The log holds every event up to `sequence` durably.
  func advance(to sequence: UInt64) {
    let ready = state.withLock { state -> [Waiter] in
      state.durable = max(state.durable, sequence)
      guard !state.waiters.isEmpty else { return [] }
      let ready = state.waiters.filter { $0.value.sequence <= sequence }
      for id in ready.keys { state.waiters[id] = nil }
      return Array(ready.values)
    }
    for waiter in ready { waiter.continuation.resume() }
  }

  /// The queue stopped or closed: nothing more will become durable.
  func fail() {
    let all = state.withLock { state -> [Waiter] in
      state.stopped = true
      defer { state.waiters = [:] }
      return Array(state.waiters.values)
    }
    for waiter in all { waiter.continuation.resume() }
  }
}
