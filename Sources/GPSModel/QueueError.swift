/// An error of the queue and its storage.
public struct QueueError: Error, Sendable, CustomStringConvertible {
  /// What kind of failure; compare with `==` in `catch` clauses.
  public struct Code: Sendable, Hashable, CustomStringConvertible {
    private enum Value: Sendable, Hashable {
      case corrupt, io, locked, writerStopped, invalidArgument, closed, illegalTransition, notFound, leaseLost, dataLost
      case conflict, tooLarge, fenced, notLeader, unavailable
    }

    private let value: Value

    /// Stored bytes do not decode: a checksum, a frame, the hash chain or a compressed block is wrong.
    public static let corrupt = Code(value: .corrupt)
    /// A file system call failed (the message names the call, the file and errno).
    public static let io = Code(value: .io)
    /// Another process holds the data directory's lock.
    public static let locked = Code(value: .locked)
    /// An earlier write or fsync failed; the writer accepts no more appends until reopened.
    public static let writerStopped = Code(value: .writerStopped)
    /// The caller passed something the log cannot store.
    public static let invalidArgument = Code(value: .invalidArgument)
    /// The log was closed.
    public static let closed = Code(value: .closed)
    /// The event is not a legal transition of its run's state machine; nothing was written.
    public static let illegalTransition = Code(value: .illegalTransition)
    /// No run has that id.
    public static let notFound = Code(value: .notFound)
    /// The lease presented is no longer the run's lease (it expired, or another scheduler holds the run).
    public static let leaseLost = Code(value: .leaseLost)
    /// Sequences the log once held are gone (a segment file was deleted or truncated); ``QueueError/missing``
    /// names them. Nothing opens until the files are restored or the loss is accepted explicitly.
    public static let dataLost = Code(value: .dataLost)
    /// The request contradicts what is stored (an idempotency key already used with other parameters).
    public static let conflict = Code(value: .conflict)
    /// The request is larger than the configured limit; nothing was written.
    public static let tooLarge = Code(value: .tooLarge)
    /// Another server leads the store now: this one's writes are refused (its epoch is over).
    public static let fenced = Code(value: .fenced)
    /// A service the queue depends on (the store's database) cannot be reached; nothing was written.
    public static let unavailable = Code(value: .unavailable)
    /// This server is a standby: writes go to the leader (the message names it).
    public static let notLeader = Code(value: .notLeader)

    public var description: String {
      switch value {
      case .corrupt: "corrupt"
      case .io: "I/O error"
      case .locked: "locked"
      case .writerStopped: "writer stopped"
      case .invalidArgument: "invalid argument"
      case .closed: "closed"
      case .illegalTransition: "illegal transition"
      case .notFound: "not found"
      case .leaseLost: "lease lost"
      case .dataLost: "data lost"
      case .conflict: "conflict"
      case .tooLarge: "too large"
      case .fenced: "fenced"
      case .notLeader: "not the leader"
      case .unavailable: "unavailable"
      }
    }
  }

  public var code: Code
  /// One line saying what is wrong and what to do.
  public var message: String
  public var cause: (any Error)?
  /// With ``Code-swift.struct/dataLost``: the sequences that are gone.
  public var missing: ClosedRange<UInt64>?
  /// The log's event the reducer refused, when a replay (or a staged apply) stopped at one.
  public var refusedEvent: UInt64?
  /// With ``Code-swift.struct/notLeader``: the leader's address (`HOST:PORT`), sent to clients in
  /// the `gps-leader` metadata so they follow it.
  public var leader: String?

  public init(code: Code, message: String, cause: (any Error)? = nil, missing: ClosedRange<UInt64>? = nil) {
    self.code = code
    self.message = message
    self.cause = cause
    self.missing = missing
  }

  public var description: String { message }

  /// How the message of every run-index row that fails its checksum begins.
  package static let runIndexDamage = "the run index is damaged: "
}
