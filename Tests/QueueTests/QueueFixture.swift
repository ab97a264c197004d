import Foundation
import GPSModel
import GPSTestSupport
import PostgresStore
import Queue
import SwiftProtobuf
import Testing

/// A queue in a temporary directory on a manual clock.
struct QueueFixture {
  let directory: String
  let clock = ManualClock()
  var options: QueueOptions

  init(directory: URL, configure: (inout QueueOptions) -> Void = { _ in }) {
    self.directory = directory.path
    options = QueueOptions()
    options.log.fsync = .none
    configure(&options)
  }

  func open() throws -> RunQueue { try RunQueue(directory: directory, options: options, clock: clock) }

  /// With a store: takes the lead anew (a new epoch), brings the data directory's copy of the log up
  /// to the store's, and opens the queue committing to the store; without one, ``open()``.
  func open(on store: PostgresStore?) async throws -> RunQueue {
    guard let store else { return try open() }
    let server = "fixture"
    if let leader = try? await store.leader(), leader.serverID == server {
      try await store.release(epoch: leader.epoch, serverID: server)
    }
    let epoch = try #require(try await store.acquire(serverID: server, address: "fixture:0", lease: .seconds(60)))
    try await StoreMirror.catchUp(directory: directory, store: store, options: options.log)
    var options = options
    options.log.store = EpochWriter(store: store, epoch: epoch, serverID: server)
    return try RunQueue(directory: directory, options: options, clock: clock)
  }

  /// The state a full replay of the log gives (no snapshot).
  func replayed() throws -> QueueState {
    var state = QueueState()
    try LogReader(directory: directory).read { try state.apply($0) }
    return state
  }
}

func request(_ deployment: String = "flow/deploy", key: String = "", tags: [String] = [], priority: Int32 = 0)
  -> EnqueueRequest
{
  var request = EnqueueRequest(deployment: deployment, flow: "flow", parametersJSON: #"{"x":1}"#)
  request.idempotencyKey = key
  request.tags = tags
  request.priority = priority
  request.parameters = [RunParameter(name: "x", type: "test.X", value: [8, 1])]
  return request
}

func attempt(_ step: String, _ number: UInt32) -> RunEvent.OneOf_Kind {
  .attemptStarted(
    .with {
      $0.step = step
      $0.attempt = number
    })
}

func succeeded(_ step: String, _ number: UInt32) -> RunEvent.OneOf_Kind {
  .attemptSucceeded(
    .with {
      $0.step = step
      $0.attempt = number
    })
}
