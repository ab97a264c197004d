public import GPSModel
import Synchronization

/// A clock that moves only when told to: for deterministic tests of leases, lateness, retries,
/// timeouts and heartbeats. A sleeper wakes when ``advance(by:)`` or ``set(_:)`` reaches its
/// deadline, never on its own.
public final class ManualClock: WallClock {
  private struct Sleeper {
    let id: UInt64
    let deadline: Timestamp
    let continuation: CheckedContinuation<Void, any Error>
  }

  private struct State {
    var now: Timestamp
    var sleepers: [Sleeper] = []
    var nextID: UInt64 = 0
  }

  private let state: Mutex<State>

  public init(_ start: Timestamp = Timestamp(micros: 1_800_000_000_000_000)) {
    state = Mutex(State(now: start))
  }

  public func now() -> Timestamp { state.withLock { $0.now } }

  /// The earliest time a task asleep on this clock wakes at, if one is asleep.
  public var nextWake: Timestamp? { state.withLock { $0.sleepers.map(\.deadline).min() } }

  public func sleep(until deadline: Timestamp) async throws {
    let id = state.withLock { state in
      defer { state.nextID += 1 }
      return state.nextID
    }
    try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        let outcome = state.withLock { state -> Result<Void, any Error>? in
          if Task.isCancelled { return .failure(CancellationError()) }
          if deadline <= state.now { return .success(()) }
          state.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: continuation))
          return nil
        }
        if let outcome { continuation.resume(with: outcome) }
      }
    } onCancel: {
      let sleeper = state.withLock { state -> Sleeper? in
        guard let index = state.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
        return state.sleepers.remove(at: index)
      }
      sleeper?.continuation.resume(throwing: CancellationError())
    }
  }

  public func advance(by duration: Duration) {
    wake { $0 = $0 + duration }
  }

  public func set(_ time: Timestamp) {
    wake { $0 = time }
  }

  private func wake(_ move: (inout Timestamp) -> Void) {
    let due = state.withLock { state -> [Sleeper] in
      move(&state.now)
      let now = state.now
      let due = state.sleepers.filter { $0.deadline <= now }
      state.sleepers.removeAll { $0.deadline <= now }
      return due
    }
    for sleeper in due { sleeper.continuation.resume() }
  }
}
