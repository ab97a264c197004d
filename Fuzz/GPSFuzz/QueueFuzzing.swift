import Foundation
import GPSModel
import Queue
import SwiftProtobuf

/// Entry points for coverage-guided fuzzing (`make fuzz`) and for replaying its corpora in tests:
/// each takes any bytes and must return without trapping; what it finds wrong it reports with
/// `preconditionFailure`, which the fuzzer records as a crash with its input.
package enum QueueFuzzing {
  /// The log's batch decoder on `data`: read as a segment file; or (first byte odd) as one batch
  /// frame whose length and checksum are made to match, so that random bodies reach the body
  /// decoder, LZ4 and the event decoder behind the checksum.
  package static func batchDecoder(_ data: [UInt8]) {
    guard let mode = data.first else { return }
    var bytes = Array(data.dropFirst())
    if mode & 1 == 1 {
      var frame = bytes
      if frame.count < LogFormat.batchHeaderSize {
        frame += [UInt8](repeating: 0, count: LogFormat.batchHeaderSize - frame.count)
      }
      frame.storeLittleEndian(UInt32(frame.count), at: 0)
      frame.storeLittleEndian(CRC32C.checksum(frame[8...]), at: 4)
      bytes = LogFormat.segmentHeader(firstSequence: 1) + frame
    }
    let scan = SegmentScan(name: LogFormat.segmentName(firstSequence: 1), bytes: bytes)
    _ = scan.stopIsTornTail
    _ = scan.tornBatchSequences(expected: 1)
    _ = scan.endOfBatches
    for batch in scan.batches {
      _ = scan.hash(of: batch)
      guard case .success(let records) = scan.records(of: batch) else { continue }
      precondition(records.count == batch.header.count, "decoded \(records.count) records of \(batch.header.count)")
      for (index, payload) in records.enumerated() {
        let record = LogRecord(sequence: batch.header.baseSequence &+ UInt64(index), payload: payload)
        if let event = try? RunEvent(record) { _ = event.typeName }
      }
    }
  }

  /// The reducer on events decoded from `data` (each a length byte, then that many bytes of a
  /// protobuf `Event`): each is applied or refused with an error, never a trap; the ready index,
  /// the run index's records and a snapshot follow every change, and the snapshot reads back as
  /// the same state.
  package static func reducer(_ data: [UInt8]) {
    var state = QueueState()
    var index = ReadyIndex()
    var position = 0
    var now = Timestamp(micros: 1_800_000_000_000_000)
    while position < data.count {
      let length = Int(data[position])
      position += 1
      let payload = Array(data[position..<min(data.count, position + length)])
      position += length
      guard let event = try? RunEvent(serializedBytes: payload) else { continue }
      now = now + .microseconds(Int64(length) << 20)
      do throws(QueueError) {
        try state.apply(event, sequence: state.lastSequence &+ 1)
      } catch {
        precondition(!error.message.isEmpty)
        continue
      }
      if let id = event.run, let run = state.runs[id] {
        index.track(run, now: now, lateAfter: .seconds(15))
        _ = try? run.indexRecord(columns: false) { UInt64($0.utf8.count) }
        _ = run.stateSince.description + run.scheduledStart.description
      }
      _ = index.next(in: state, now: now, limits: ConcurrencyLimits(deployments: ["flow/deployment": 1]))
      _ = index.dueLate(in: state, now: now)
      _ = index.nextDeadline
    }
    _ = ReadyIndex(state: state, now: now, lateAfter: .seconds(15), grace: .seconds(30))
    precondition(QueueState(snapshotPayload: state.snapshotPayload()) == state, "the snapshot does not read back")
  }
}
