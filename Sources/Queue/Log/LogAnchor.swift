import Foundation

/// Where the log begins when it does not begin at sequence 1: written only when a user accepts
/// that the first segments are lost (`EventLog.acceptLoss`), so a log whose head is missing is
/// never taken for a whole one.
///
/// `DATA/log/ANCHOR`, JSON: the first sequence the log holds and the hash the batch before it
/// had (the previous-hash of the first remaining batch), so the hash chain is verified from there.
public struct LogAnchor: Sendable, Hashable, Codable {
  /// The first sequence the log holds.
  public var firstSequence: UInt64
  /// SHA-256 of the batch that ended at `firstSequence - 1` (lost); base64 in the file.
  var previousHash: Data
  /// Who accepted the loss, and when (RFC 3339).
  public var acceptedBy: String
  public var acceptedAt: String

  enum CodingKeys: String, CodingKey {
    case firstSequence = "first_sequence"
    case previousHash = "previous_hash"
    case acceptedBy = "accepted_by"
    case acceptedAt = "accepted_at"
  }

  public var previousHashBytes: [UInt8] { Array(previousHash) }

  /// Replaying needs a snapshot of the state at or after the anchor: the events before it are gone.
  var noSnapshotCovers: QueueError {
    QueueError(
      code: .dataLost,
      message:
        "the log begins at sequence \(firstSequence) (sequences before it were accepted as lost by \(acceptedBy) at \(acceptedAt)) and no snapshot at or after it matches the log, so the state before cannot be rebuilt",
      missing: 1...(firstSequence - 1))
  }

  static func path(logDirectory: String) -> String { logDirectory + "/ANCHOR" }

  /// The anchor of the log in `logDirectory`, nil when there is none (the log starts at 1).
  static func read(logDirectory: String, fileSystem: any FileSystem) throws(QueueError) -> LogAnchor? {
    let path = path(logDirectory: logDirectory)
    guard try fileSystem.size(of: path) != nil else { return nil }
    let contents = try fileSystem.read(path, from: 0)
    guard let anchor = try? JSONDecoder().decode(LogAnchor.self, from: Data(contents)),
      anchor.firstSequence > 1, anchor.previousHash.count == 32
    else {
      throw QueueError(code: .corrupt, message: "\(path) is damaged: it does not say where the log begins")
    }
    return anchor
  }

  func write(logDirectory: String, fileSystem: any FileSystem) throws(QueueError) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let data: Data
    do {
      data = try encoder.encode(self)
    } catch {
      throw QueueError(code: .invalidArgument, message: "the anchor does not encode: \(error)", cause: error)
    }
    try fileSystem.writeAtomically(Self.path(logDirectory: logDirectory), contents: Array(data) + [0x0A])
  }
}
