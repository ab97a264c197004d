import Foundation
package import GPSModel

/// Where the log begins when it does not begin at sequence 1: written when its first segments are
/// archived (`gps log archive`, the server's `--retain`) or when a user accepts that they are lost
/// (`gps log accept-loss`), so a log whose head is missing is never taken for a whole one.
///
/// `DATA/log/ANCHOR`, JSON: the first sequence the log holds and the hash the batch before it
/// had (the previous-hash of the first remaining batch), so the hash chain is verified from there.
package struct LogAnchor: Sendable, Hashable, Codable {
  /// The first sequence the log holds.
  package var firstSequence: UInt64
  /// SHA-256 of the batch that ended at `firstSequence - 1` (archived or lost); base64 in the file.
  var previousHash: Data
  /// Who accepted a loss of the log's head, and when (RFC 3339); nil when nothing was lost.
  package var acceptedBy: String?
  package var acceptedAt: String?
  /// The segments before `firstSequence` that were archived rather than lost.
  package var archive: Archive?

  /// Sequences `archive.firstSequence ..< anchor.firstSequence` left the log for `DATA/archive/`
  /// (or were deleted); those before `archive.firstSequence`, if any, were lost.
  package struct Archive: Sendable, Hashable, Codable {
    /// The first archived sequence: 1, or where an accepted loss had left the log.
    package var firstSequence: UInt64
    /// The previous-hash of the first archived batch, so the archive's chain is verified too.
    var previousHash: Data
    /// Who archived last, and when (RFC 3339).
    package var archivedBy: String
    package var archivedAt: String
    /// The `LogSegmentsArchived` note of the last archive: in the log's hash chain, it vouches for
    /// this anchor.
    package var noteSequence: UInt64?

    enum CodingKeys: String, CodingKey {
      case firstSequence = "first_sequence"
      case previousHash = "previous_hash"
      case archivedBy = "archived_by"
      case archivedAt = "archived_at"
      case noteSequence = "note_sequence"
    }

    package var previousHashBytes: [UInt8] { Array(previousHash) }
  }

  enum CodingKeys: String, CodingKey {
    case firstSequence = "first_sequence"
    case previousHash = "previous_hash"
    case acceptedBy = "accepted_by"
    case acceptedAt = "accepted_at"
    case archive
  }

  package var previousHashBytes: [UInt8] { Array(previousHash) }

  /// The first sequence that was not lost: the archive's start, or the log's.
  package var firstKept: UInt64 { archive?.firstSequence ?? firstSequence }

  /// What came before the log's first sequence, for messages: "sequences 1–9 were archived by …".
  package var headDescription: String {
    var parts: [String] = []
    if let archive {
      parts.append(
        "sequences \(archive.firstSequence)–\(firstSequence - 1) were archived by \(archive.archivedBy) at \(archive.archivedAt)"
      )
    }
    if firstKept > 1 {
      parts.append(
        "sequences 1–\(firstKept - 1) were accepted as lost by \(acceptedBy ?? "someone") at \(acceptedAt ?? "an unknown time")"
      )
    }
    return parts.joined(separator: "; ")
  }

  /// Replaying needs a snapshot of the state at or after the anchor: the events before it are gone.
  var noSnapshotCovers: QueueError {
    let putBack =
      archive == nil
      ? "" : "; put the archived segments back in DATA/archive/ to rebuild from them"
    return QueueError(
      code: .dataLost,
      message:
        "the log begins at sequence \(firstSequence) (\(headDescription)) and no snapshot or run index at or after it matches the log, so the state before cannot be rebuilt\(putBack)",
      missing: 1...(firstSequence - 1))
  }

  static func path(logDirectory: String) -> String { logDirectory + "/ANCHOR" }

  /// The anchor of the log in `logDirectory`, nil when there is none (the log starts at 1).
  package static func read(logDirectory: String, fileSystem: any FileSystem) throws(QueueError) -> LogAnchor? {
    let path = path(logDirectory: logDirectory)
    guard try fileSystem.size(of: path) != nil else { return nil }
    return try decode(try fileSystem.read(path, from: 0), from: path)
  }

  /// The anchor as JSON, as the file holds it (a store keeps it so).
  package var encoded: [UInt8] { (try? JSONEncoder().encode(self)).map { Array($0) } ?? [] }

  /// The anchor `encoded` holds; throws when it does not say where a log begins.
  package static func decode(_ bytes: [UInt8], from source: String) throws(QueueError) -> LogAnchor {
    guard let anchor = try? JSONDecoder().decode(LogAnchor.self, from: Data(bytes)), anchor.firstSequence > 1,
      anchor.previousHash.count == 32
    else {
      throw QueueError(code: .corrupt, message: "\(source) is damaged: it does not say where the log begins")
    }
    return anchor
  }

  func write(logDirectory: String, fileSystem: any FileSystem) throws(QueueError) {
    try fileSystem.writeJSONAtomically(self, to: Self.path(logDirectory: logDirectory), what: "the anchor")
  }
}

extension FileSystem {
  /// Writes `value` as pretty, key-sorted JSON (a line) in place of the file at `path`, atomically.
  func writeJSONAtomically(_ value: some Encodable, to path: String, what: String) throws(QueueError) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let data: Data
    do {
      data = try encoder.encode(value)
    } catch {
      throw QueueError(code: .invalidArgument, message: "\(what) does not encode: \(error)", cause: error)
    }
    try writeAtomically(path, contents: Array(data) + [0x0A])
  }
}
