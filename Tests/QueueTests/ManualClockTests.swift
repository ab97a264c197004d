import GPSModel
import GPSTestSupport
import Queue
import Synchronization
import Testing

private final class Flag: Sendable {
  let value = Atomic<Bool>(false)
}

@Suite struct ManualClockTests {
  @Test func aSleeperWakesOnlyWhenTheClockReachesItsDeadline() async throws {
    let clock = ManualClock(Timestamp(micros: 1_000_000))
    let woke = Flag()
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask {
        try await clock.sleep(for: .seconds(10))
        woke.value.store(true, ordering: .sequentiallyConsistent)
      }
      try await eventually("the sleeper") { clock.nextWake == Timestamp(micros: 11_000_000) }
      clock.advance(by: .seconds(9))
      #expect(clock.nextWake == Timestamp(micros: 11_000_000))
      let early = woke.value.load(ordering: .sequentiallyConsistent)
      #expect(!early)
      clock.advance(by: .seconds(1))
      try await group.waitForAll()
      let late = woke.value.load(ordering: .sequentiallyConsistent)
      #expect(late)
      #expect(clock.nextWake == nil)
    }
  }

  @Test func aDeadlineAlreadyPastReturnsAtOnceAndCancellationThrows() async throws {
    let clock = ManualClock()
    try await clock.sleep(until: clock.now())
    let sleeper = Task { try await clock.sleep(for: .seconds(3600)) }
    try await eventually("the sleeper") { clock.nextWake != nil }
    sleeper.cancel()
    await #expect(throws: CancellationError.self) { try await sleeper.value }
    #expect(clock.nextWake == nil)
  }

  @Test func aWakeSignalsTimeoutRunsOnTheGivenClock() async throws {
    let clock = ManualClock()
    let signal = WakeSignal()
    let waiter = Task { await signal.wait(timeout: .seconds(5), clock: clock) }
    try await eventually("the waiter") { clock.nextWake != nil }
    clock.advance(by: .seconds(5))
    await waiter.value
    #expect(clock.nextWake == nil)
  }
}
