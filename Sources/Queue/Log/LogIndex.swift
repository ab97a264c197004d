package import GPSModel
import Synchronization

/// Where in the log a sequence is: a sparse, in-memory index of batch positions, so a reader that
/// wants the events of one run from a year ago starts at the batch that holds them instead of
/// reading every segment before it.
///
/// It samples one batch every ``spacing`` bytes (by default 256 KiB: of each segment about 4,000 entries per GB of log),
/// learned on first use by scanning batch headers (no decompression) and extended as the last
/// segment grows. A segment's entries are dropped when its file changes size though it is not the
/// last (it was replaced), so a stale entry is never used. Derived from the files, never written.
package final class LogIndex: Sendable {
  /// Bytes of segment between two sampled batches.
  package let spacing: Int
  package let logDirectory: String
  let fileSystem: any FileSystem
  private let segments = Mutex<[String: Samples]>([:])

  struct Samples {
    /// (first sequence of a batch, its file offset), ascending.
    var entries: [(sequence: UInt64, offset: Int)] = []
    /// How far batch headers were read.
    var scannedTo = 0
  }

  /// - Parameter directory: the data directory (the log is in its `log` folder).
  package init(directory: String, spacing: Int = 256 * 1024, fileSystem: any FileSystem = PosixFileSystem()) {
    logDirectory = directory + "/log"
    self.spacing = spacing
    self.fileSystem = fileSystem
  }

  /// A cursor for ``LogReader`` that starts at the batch holding `sequence`, or at most
  /// ``spacing`` bytes before it.
  package func cursor(at sequence: UInt64) throws(QueueError) -> LogCursor {
    var cursor = LogCursor(from: sequence)
    let names = try EventLog.segmentNames(in: logDirectory, fileSystem: fileSystem)
    guard let name = names.last(where: { LogFormat.firstSequence(ofSegmentNamed: $0)! <= sequence }) else {
      return cursor
    }
    let path = logDirectory + "/" + name
    let size = Int(try fileSystem.size(of: path) ?? 0)
    var samples = segments.withLock { $0[name] } ?? Samples()
    if samples.scannedTo > size { samples = Samples() }
    if samples.scannedTo < size {
      try extend(&samples, segment: name, to: size)
      segments.withLock { $0[name] = samples }
    }
    cursor.segment = name
    // The last sampled batch that starts at or before the sequence.
    var low = 0
    var high = samples.entries.count
    while low < high {
      let middle = (low + high) / 2
      if samples.entries[middle].sequence <= sequence { low = middle + 1 } else { high = middle }
    }
    cursor.offset = low == 0 ? 0 : samples.entries[low - 1].offset
    return cursor
  }

  /// Reads batch headers from where `samples` stopped to `size`, sampling every ``spacing`` bytes.
  private func extend(_ samples: inout Samples, segment name: String, to size: Int) throws(QueueError) {
    var window = 4 << 20
    while samples.scannedTo < size {
      let bytes = try fileSystem.read(
        logDirectory + "/" + name, from: UInt64(samples.scannedTo), maxBytes: window)
      guard !bytes.isEmpty else { return }
      let scan = SegmentScan(name: name, bytes: bytes, fileOffset: samples.scannedTo)
      guard case .success = scan.header else { return }
      for batch in scan.batches
      where samples.entries.last.map({ batch.offset - $0.offset >= spacing }) ?? true {
        samples.entries.append((batch.header.baseSequence, batch.offset))
      }
      let end = scan.endOfBatches
      if end == samples.scannedTo || (bytes.count < window && scan.stop != nil) {
        // A batch larger than the window, or the end of what is complete (a torn or growing tail).
        guard bytes.count == window else {
          samples.scannedTo = end
          return
        }
        window *= 2
        continue
      }
      samples.scannedTo = end
    }
  }
}
