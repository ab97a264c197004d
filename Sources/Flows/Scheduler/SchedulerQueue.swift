public import GPSModel

/// What a scheduler needs from a queue: the in-process ``RunQueue``, or a remote server's.
public protocol SchedulerQueue: Sendable {
  /// Records the scheduler's deployments (a new version for each changed definition) and returns
  /// each one's version.
  func register(_ definitions: [DeploymentDefinition], worker: String) async throws -> [UInt32]
  /// Claims up to `limit` ready runs of `deployments` (nil: of any) at once (one commit).
  func claim(scheduler: String, limit: Int, deployments: Set<String>?) async throws -> [Claim]
  /// A registered version of a deployment (0: the newest), or nil when the queue has none such.
  func deployment(named name: String, version: UInt32) async throws -> DeploymentVersion?
  func heartbeat(_ lease: LeaseToken) async throws -> HeartbeatReply
  /// Renews several leases together (one call to a remote queue), each with its own outcome; throws
  /// only when none could be tried (the server is unreachable).
  func heartbeat(all leases: [LeaseToken]) async throws -> [Result<HeartbeatReply, QueueError>]
  /// Records events atomically, in order.
  @discardableResult
  func report(_ lease: LeaseToken, _ events: [RunEvent.OneOf_Kind]) async throws -> Run
  /// `signal` fires whenever a run may have become claimable.
  func notifyWhenWorkArrives(_ signal: WakeSignal)
  /// `signal` fires whenever cancellation of a claimed run is requested.
  func notifyOnCancelRequests(_ signal: WakeSignal)
  /// When a run next becomes ready with time, if known.
  var nextDeadline: Timestamp? { get }
}

extension SchedulerQueue {
  /// One ``heartbeat(_:)`` after the other: right for a queue in this process.
  public func heartbeat(all leases: [LeaseToken]) async throws -> [Result<HeartbeatReply, QueueError>] {
    var outcomes: [Result<HeartbeatReply, QueueError>] = []
    for lease in leases {
      do {
        outcomes.append(.success(try await heartbeat(lease)))
      } catch let error as QueueError {
        outcomes.append(.failure(error))
      }
    }
    return outcomes
  }
}
