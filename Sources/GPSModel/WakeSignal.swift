import Synchronization

/// Wakes one waiting task: a signal given while nobody waits is kept until the next wait. The
/// scheduler waits on one for "a run may be claimable" and "a slot is free", with no polling.
public final class WakeSignal: Sendable {
  private struct State {
    var pending = false
    var waiter: CheckedContinuation<Void, Never>?
  }

  private let state = Mutex(State())

  public init() {}

  public func signal() {
    let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
      guard let waiter = state.waiter else {
        state.pending = true
        return nil
      }
      state.waiter = nil
      return waiter
    }
    waiter?.resume()
  }

  /// Returns at the next signal (at once if one is pending), or when the task is cancelled.
  public func wait() async {
    await withTaskCancellationHandler {
      await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let resumeNow = state.withLock { state -> Bool in
          if state.pending || Task.isCancelled {
            state.pending = false
            return true
          }
          precondition(state.waiter == nil, "a WakeSignal has one waiter at a time")
          state.waiter = continuation
          return false
        }
        if resumeNow { continuation.resume() }
      }
    } onCancel: {
      signal()
    }
  }

  /// Returns at the next signal or after `timeout` on `clock`, whichever comes first.
  public func wait(timeout: Duration, clock: any WallClock = SystemClock()) async {
    let deadline = clock.now() + timeout
    await withTaskGroup(of: Void.self) { group in
      group.addTask { [self] in
        try? await clock.sleep(until: deadline)
        if !Task.isCancelled { signal() }
      }
      await wait()
      group.cancelAll()
    }
  }
}
