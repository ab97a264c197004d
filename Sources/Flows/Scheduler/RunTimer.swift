import GPSModel
import Synchronization

/// The scheduler's one timer for run timeouts: sleeps until the earliest deadline, and is woken
/// only when a run with an earlier one starts.
final class RunTimer: Sendable {
  let clock: any WallClock
  private let target = Mutex<Timestamp?>(nil)
  private let signal = WakeSignal()

  init(clock: any WallClock) { self.clock = clock }

  func wait(until deadline: Timestamp?) async {
    target.withLock { $0 = deadline }
    await signal.wait(timeout: deadline.map { $0 - clock.now() } ?? .seconds(3600), clock: clock)
  }

  func signalIfEarlier(_ deadline: Timestamp?) {
    guard let deadline else { return }
    let earlier = target.withLock { target in
      guard target.map({ deadline < $0 }) ?? true else { return false }
      target = deadline
      return true
    }
    if earlier { signal.signal() }
  }
}
