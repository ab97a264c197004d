public import Logging
import Synchronization

/// Collects log records in memory so tests can assert on what was logged.
public final class CapturedLogs: Sendable {
  /// One logged record: its level, message and metadata.
  public struct Record: Sendable {
    public var level: Logger.Level
    public var message: String
    public var metadata: [String: String]
  }

  private let records = Mutex<[Record]>([])

  public init() {}

  /// A logger whose records land here.
  public func logger(label: String = "test") -> Logger {
    var logger = Logger(label: label) { _ in Handler(sink: self) }
    logger.logLevel = .trace
    return logger
  }

  public var all: [Record] { records.withLock { $0 } }

  struct Handler: LogHandler {
    let sink: CapturedLogs
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
      get { metadata[key] }
      set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
      var merged = self.metadata
      if let extra = event.metadata { merged.merge(extra) { $1 } }
      let record = Record(
        level: event.level, message: "\(event.message)",
        metadata: merged.mapValues { "\($0)" })
      sink.records.withLock { $0.append(record) }
    }
  }
}
