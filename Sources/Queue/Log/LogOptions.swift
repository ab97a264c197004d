public import CoreMetrics
public import GPSModel
import SwiftProtobuf

/// When appended batches are made durable.
public enum FsyncPolicy: Sendable, Hashable {
  /// `fdatasync` after every batch, before its appenders are acknowledged (the default).
  case always
  /// Acknowledge after `write`; `fdatasync` at most this often. A crash may lose that window.
  case interval(Duration)
  /// Never sync: for tests and benchmarks only.
  case none
}

/// Options of an ``EventLog``.
public struct LogOptions: Sendable {
  /// A segment is closed and a new one started once it reaches this size.
  public var segmentSize = 64 * 1024 * 1024
  /// Opening checks every batch of every sealed segment (checksums, continuity). Without it,
  /// opening reads only their headers (and the last segment whole), so it takes the same time at
  /// 10 GB of log as at 10 MB; whoever opens so checks the sealed segments afterwards
  /// (``LogVerifier/verify(thorough:)`` with `thorough: false`), as `gps server start` does in the
  /// background. Readers check every batch they read either way.
  public var scanSealedSegments = true
  public var fsync = FsyncPolicy.always
  /// Batch bodies of at least this many bytes are LZ4-compressed (when that makes them smaller).
  public var compressionThreshold = 4096
  /// Appends waiting together are written as one batch up to this many body bytes.
  public var maxBatchBytes = 8 * 1024 * 1024
  /// Who takes the data directory's lock, and how long it waits for a command that holds it.
  public var lock = LockOptions()
  /// Where each batch is committed before the segment files record it (the log's durable home
  /// when the files are a local copy, as with PostgreSQL); nil: the files are the log.
  package var store: (any BatchStore)?
  /// Where the log reports append latency, fsync time and batch sizes; nil: not measured.
  public var metrics: (any MetricsFactory)?

  public init() {}
}

/// What opening the log found and repaired at the end of the last segment.
public struct RecoveryReport: Sendable, Hashable {
  /// Bytes truncated from the end of the last segment (an interrupted, unacknowledged append).
  public var truncatedBytes: Int = 0
  /// The segment that was truncated, if any, and where the cut is.
  public var truncatedSegment: String?
  public var truncatedFromOffset: Int = 0
  /// The first sequence the dropped bytes would have held, and their last when the torn batch's
  /// header was readable.
  public var droppedFromSequence: UInt64?
  public var droppedToSequence: UInt64?
  /// A last segment that had no valid header (created, then interrupted) and was removed.
  public var removedSegment: String?
  /// An interrupted archive (its anchor written, not every segment moved) was finished.
  public var finishedArchiving = false

  public var isClean: Bool { truncatedBytes == 0 && removedSegment == nil }

  init() {}

  /// The report a LogTailTruncated event recorded.
  public init(note: Gps_V1_LogTailTruncated) {
    truncatedSegment = note.segment.isEmpty ? nil : note.segment
    truncatedFromOffset = Int(note.fromOffset)
    truncatedBytes = note.toOffset >= note.fromOffset ? Int(note.toOffset - note.fromOffset) : 0
    droppedFromSequence = note.firstSequence == 0 ? nil : note.firstSequence
    droppedToSequence = note.lastSequence == 0 ? nil : note.lastSequence
    removedSegment = note.removedSegment.isEmpty ? nil : note.removedSegment
  }

  /// One line: what was cut, where, and which sequences it would have held.
  public var summary: String {
    if isClean { return "the log was closed cleanly" }
    var parts: [String] = []
    if let truncatedSegment {
      let sequences: String
      switch (droppedFromSequence, droppedToSequence) {
      case (let from?, let to?): sequences = from == to ? "sequence \(from)" : "sequences \(from)–\(to)"
      case (let from?, nil): sequences = "sequences from \(from); its header is unreadable"
      default: sequences = "sequences unknown"
      }
      parts.append(
        "cut bytes \(truncatedFromOffset)–\(truncatedFromOffset + truncatedBytes) (\(truncatedBytes) bytes) at the end of segment \(truncatedSegment): an interrupted append, never acknowledged (\(sequences))"
      )
    }
    if let removedSegment { parts.append("removed segment \(removedSegment), whose header was never completed") }
    return parts.joined(separator: "; ")
  }

  /// The report as the log's note event.
  public var note: Gps_V1_LogTailTruncated {
    .with {
      $0.segment = truncatedSegment ?? ""
      $0.fromOffset = UInt64(truncatedFromOffset)
      $0.toOffset = UInt64(truncatedFromOffset + truncatedBytes)
      $0.firstSequence = droppedFromSequence ?? 0
      $0.lastSequence = droppedToSequence ?? 0
      $0.removedSegment = removedSegment ?? ""
    }
  }
}
