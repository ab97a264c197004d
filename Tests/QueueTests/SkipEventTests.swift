import Foundation
import GPSModel
import GPSTestSupport
import Queue
import SwiftProtobuf
import Testing

/// A log holding events the reducer refuses (an older version wrote them) opens only after a
/// recorded decision to pass over exactly those events (`gps log skip-event`).
@Suite struct SkipEventTests {
  /// Run `a` enqueued by the queue; then, as an older version might have written them, event 2
  /// starts `a` without a claim and event 3 claims a run that was never enqueued (both refused);
  /// event 4 enqueues run `c` properly.
  func poisonedLog(_ directory: URL, clock: ManualClock) async throws -> (a: RunID, c: RunID) {
    let queue = try RunQueue(directory: directory.path, options: QueueOptions(), clock: clock)
    let a = try await queue.enqueue(EnqueueRequest(deployment: "flow/d", flow: "flow")).run.id
    queue.close()
    let c = RunID()
    let log = try EventLog(directory: directory.path)
    defer { log.close() }
    func event(_ run: RunID, _ number: UInt32, _ kind: RunEvent.OneOf_Kind) throws -> [UInt8] {
      try RunEvent.with {
        $0.timeMicros = clock.now().micros
        $0.runID = Data(run.bytes)
        $0.runEvent = number
        $0.kind = kind
      }.serializedBytes()
    }
    _ = try await log.append([
      try event(a, 2, .started(.init())),
      try event(RunID(), 2, .claimed(.with { $0.scheduler = "s" })),
      try event(
        c, 1,
        .enqueued(
          .with {
            $0.deployment = "flow/d"
            $0.flow = "flow"
          })),
    ])
    return (a, c)
  }

  func options(index: Bool) -> QueueOptions {
    var options = QueueOptions()
    options.log.fsync = .none
    if index { options.runIndex = RunIndexOptions() }
    return options
  }

  @Test func aRefusedEventStopsTheOpenUntilADecisionSkipsExactlyIt() async throws {
    try await withTemporaryDirectory { directory in
      let clock = ManualClock()
      let (a, c) = try await poisonedLog(directory, clock: clock)
      for index in [false, true] {
        let refused = #expect(throws: QueueError.self) {
          try RunQueue(directory: directory.path, options: options(index: index), clock: clock)
        }
        #expect(refused?.refusedEvent == 2, "\(refused?.message ?? "")")
      }
      func skip(_ sequences: Set<UInt64>) throws(QueueError) -> [SkippedEvents.Decision] {
        try RunQueue.skipEvents(
          sequences, directory: directory.path, skippedBy: "alice@host", reason: "written by 0.9", clock: clock)
      }
      // An event that applies is never skipped; nor is one alone when a later one is refused too.
      let applies = #expect(throws: QueueError.self) { try skip([1]) }
      #expect(applies?.message.contains("event 1 (RunEnqueued) applies") == true, "\(applies?.message ?? "")")
      let more = #expect(throws: QueueError.self) { try skip([2]) }
      #expect(more?.message.contains("the reducer refuses event 3 too") == true, "\(more?.message ?? "")")
      #expect(more?.message.contains("`gps log skip-event 2 3 --reason …`") == true)
      let noReason = #expect(throws: QueueError.self) {
        try RunQueue.skipEvents([2, 3], directory: directory.path, skippedBy: "a", reason: " ")
      }
      #expect(noReason?.message.contains("--reason") == true)
      #expect(try LogReader(directory: directory.path).lastSequence() == 4, "a refused decision writes nothing")

      let decisions = try skip([2, 3])
      #expect(decisions.map(\.sequence) == [2, 3])
      #expect(decisions.map(\.eventType) == ["RunStarted", "RunClaimed"])
      #expect(decisions[0].run == a.description)
      #expect(decisions[0].refusal.contains("only a claimed Pending run can start"), "\(decisions[0].refusal)")
      #expect(decisions.map(\.noteSequence) == [5, 6])
      #expect(throws: QueueError.self) { try skip([2]) }

      // Every reader passes over exactly those events: the queue (with and without its index),
      // history, and the index's reader.
      for index in [false, true] {
        let queue = try RunQueue(directory: directory.path, options: options(index: index), clock: clock)
        #expect(queue.state.lastSequence == 6)
        #expect(try queue.state.run(a)?.state == .scheduled)
        #expect(try queue.state.run(c)?.state == .scheduled)
        queue.close()
      }
      let history = try QueueHistory(directory: directory.path).state(at: .sequence(.max))
      #expect(history.counts.total == 2)
      #expect(try QueueReader.fromIndex(directory: directory.path)?.state.counts.total == 2)
      var notes: [UInt64] = []
      try QueueHistory(directory: directory.path).events { _, event in
        if case .logEventSkipped(let note) = event.kind {
          notes.append(note.sequence)
          #expect(note.skippedBy == "alice@host" && note.reason == "written by 0.9")
        }
        return true
      }
      #expect(notes == [2, 3])
    }
  }

  @Test func aDecisionForAnotherEventIsRefusedAndAMissingNoteIsWrittenAtOpen() async throws {
    try await withTemporaryDirectory { directory in
      let clock = ManualClock()
      let (a, _) = try await poisonedLog(directory, clock: clock)
      let path = directory.path + "/log/SKIPPED"
      func write(_ decisions: [SkippedEvents.Decision]) throws {
        let encoder = JSONEncoder()
        try encoder.encode(SkippedEvents(decisions: decisions)).write(to: URL(fileURLWithPath: path))
      }
      var started = SkippedEvents.Decision(
        sequence: 2, eventType: "RunStarted", run: a.description, refusal: "", skippedBy: "bob", skippedAt: "",
        reason: "r")
      var claimed = started
      claimed.sequence = 3
      claimed.eventType = "RunClaimed"
      claimed.run = RunID().description
      // A file that names another event at a sequence: refused, not taken as a decision.
      var wrong = started
      wrong.eventType = "RunCompleted"
      try write([wrong, claimed])
      let error = #expect(throws: QueueError.self) {
        try RunQueue(directory: directory.path, options: options(index: false), clock: clock)
      }
      #expect(error?.code == .corrupt)
      #expect(error?.message.contains("the file belongs to another log") == true, "\(error?.message ?? "")")
      // The run id of event 3 is not known to the test: a decision for another run is refused too.
      try write([started, claimed])
      #expect(throws: QueueError.self) {
        try RunQueue(directory: directory.path, options: options(index: false), clock: clock)
      }
      // With the right decisions but no notes (a skip-event that stopped before writing them), the
      // open writes them.
      var third: RunID?
      try QueueHistory(directory: directory.path).events(from: 3) { _, event in
        third = event.run
        return false
      }
      claimed.run = third!.description
      started.noteSequence = nil
      try write([started, claimed])
      let queue = try RunQueue(directory: directory.path, options: options(index: true), clock: clock)
      queue.close()
      let decisions = try SkippedEvents.read(logDirectory: directory.path + "/log", fileSystem: PosixFileSystem())
      #expect(decisions.decisions.map(\.noteSequence) == [5, 6])
    }
  }
}
