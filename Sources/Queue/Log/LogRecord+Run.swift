package import GPSModel
import SwiftProtobuf

extension RunEvent {
  /// Decodes a log record.
  package init(_ record: LogRecord) throws(QueueError) {
    do {
      self = try RunEvent(serializedBytes: record.payload)
    } catch {
      throw QueueError(
        code: .corrupt, message: "event \(record.sequence) does not decode as a gps.v1.Event (\(error))", cause: error)
    }
  }
}

extension LogRecord {
  /// False only when the record is, without decoding it, an event of another run than the one
  /// whose 16 id bytes are `run`: a filter that skips most records of the log cheaply (an event is
  /// encoded `time_micros` (1), then `run_id` (2)). True when it may be the run's: decode to know.
  package func mayBelong(toRun run: [UInt8]) -> Bool {
    payload.withUnsafeBufferPointer { bytes in
      var index = 0
      if index < bytes.count, bytes[index] == 0x08 {  // field 1, varint
        index += 1
        while index < bytes.count, bytes[index] & 0x80 != 0 { index += 1 }
        index += 1
      }
      // Field 2, length-delimited, 16 bytes.
      guard index + 18 <= bytes.count, bytes[index] == 0x12, bytes[index + 1] == 16 else { return true }
      for offset in 0..<16 where bytes[index + 2 + offset] != run[offset] { return false }
      return true
    }
  }
}
