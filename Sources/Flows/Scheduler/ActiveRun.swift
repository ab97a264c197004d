import GPSModel
import Synchronization

extension Scheduler {
  /// A run being executed, and how to stop it: one `Mutex` over its state.
  ///
  /// The run's task executes the steps itself; only each attempt (and each backoff) runs in a task
  /// of its own, which a stop request (cancel, lost lease, run timeout) or the attempt's own timeout
  /// cancels through the handle kept in the state, so the call in flight is cancelled. The
  /// scheduler's one ``RunTimer`` enforces both timeouts: no timer per attempt.
  final class ActiveRun: Sendable {
    enum Stop: Sendable, Equatable { case cancelled, leaseLost, timedOut(String) }
    let lease: LeaseToken
    private struct State {
      var stop: Stop?
      /// Cancels the attempt in progress: a stop or the attempt's timeout calls it.
      var cancelAttempt: (@Sendable () -> Void)?
      var deadline: Timestamp?
      var timeout: Duration = .zero
      var attemptDeadline: Timestamp?
      var attemptTimedOut = false
      var finishing = false
    }
    private let state = Mutex(State())

    init(lease: LeaseToken) { self.lease = lease }

    var stop: Stop? { state.withLock { $0.stop } }

    /// The run's final events are being recorded: its lease ends with them, so heartbeats stop.
    var isFinishing: Bool { state.withLock { $0.finishing } }

    func markFinishing() { state.withLock { $0.finishing = true } }

    /// The earliest of the run's deadline and its attempt's, if it has either.
    var nextDeadline: Timestamp? {
      state.withLock { state in
        switch (state.deadline, state.attemptTimedOut ? nil : state.attemptDeadline) {
        case (let run?, let attempt?): min(run, attempt)
        case (let run?, nil): run
        case (nil, let attempt?): attempt
        case (nil, nil): nil
        }
      }
    }

    func setTimeout(_ timeout: Duration, now: Timestamp) {
      state.withLock {
        $0.timeout = timeout
        $0.deadline = now + timeout
      }
    }

    /// The first request wins; it cancels the attempt in progress, if any.
    func request(_ reason: Stop) {
      state.withLock { state in
        guard state.stop == nil else { return }
        state.stop = reason
        state.cancelAttempt?()
      }
    }

    /// Applies the deadlines that have passed by `now`: the run's ends it TimedOut, the attempt's
    /// cancels the attempt (which then fails with DEADLINE_EXCEEDED and may be retried).
    func expire(now: Timestamp) {
      let runTimeout = state.withLock { state -> Duration? in
        if let deadline = state.attemptDeadline, deadline <= now, !state.attemptTimedOut {
          state.attemptTimedOut = true
          state.cancelAttempt?()
        }
        guard let deadline = state.deadline, deadline <= now else { return nil }
        return state.timeout
      }
      if let runTimeout { request(.timedOut("the run exceeded its timeout of \(runTimeout)")) }
    }

    /// Runs `body` in a task of its own that a stop request cancels, and that `timeout` (enforced
    /// by the scheduler's timer, which `timers` is told of) cancels too; `timedOut` says whether
    /// it did. The task is awaited here (and cancelled with the caller): it never outlives the call.
    func attempt<T: Sendable>(
      timeout: Duration?, timers: RunTimer, _ body: @escaping @Sendable () async -> T
    ) async -> (value: T, timedOut: Bool) {
      if let timeout {
        let deadline = timers.clock.now() + timeout
        state.withLock {
          $0.attemptDeadline = deadline
          $0.attemptTimedOut = false
        }
        timers.signalIfEarlier(deadline)
      }
      let task = Task { await body() }
      state.withLock { state in
        state.cancelAttempt = { task.cancel() }
        if state.stop != nil || state.attemptTimedOut { task.cancel() }
      }
      let value = await withTaskCancellationHandler {
        await task.value
      } onCancel: {
        task.cancel()
      }
      let timedOut = state.withLock { state in
        defer {
          state.cancelAttempt = nil
          state.attemptDeadline = nil
          state.attemptTimedOut = false
        }
        return state.attemptTimedOut
      }
      return (value, timedOut)
    }
  }
}
