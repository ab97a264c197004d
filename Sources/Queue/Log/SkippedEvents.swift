import Foundation
package import GPSModel

/// Events of the log that the reducer passes over by a user's recorded decision (`gps log
/// skip-event`): events an older version of GPS wrote that this one refuses. Without a decision, a
/// log holding one does not open (the refusal names it and what to do); with one, every replay
/// (the server's, the run index's, `history`'s) passes over exactly these events, and `history
/// verify` names them.
///
/// `DATA/log/SKIPPED`, JSON, beside the log's `ANCHOR`: a replay must know a decision before it
/// reaches the event. Each decision is also a `LogEventSkipped` note in the log's hash chain
/// (`note_sequence`), so the decision itself cannot be altered unseen.
package struct SkippedEvents: Sendable, Hashable, Codable {
  package struct Decision: Sendable, Hashable, Codable {
    /// The event passed over, its type and its run (the run id's text; "" for none), as the reducer
    /// saw them: a replay that finds another event there refuses the file.
    package var sequence: UInt64
    package var eventType: String
    package var run: String
    /// Why the reducer refuses it, in its words.
    package var refusal: String
    /// Who decided (user@host), when (RFC 3339), and why.
    package var skippedBy: String
    package var skippedAt: String
    package var reason: String
    /// The `LogEventSkipped` note that records the decision in the log; nil until it is written
    /// (the next open writes it).
    package var noteSequence: UInt64?

    package init(
      sequence: UInt64, eventType: String, run: String, refusal: String, skippedBy: String, skippedAt: String,
      reason: String, noteSequence: UInt64? = nil
    ) {
      self.sequence = sequence
      self.eventType = eventType
      self.run = run
      self.refusal = refusal
      self.skippedBy = skippedBy
      self.skippedAt = skippedAt
      self.reason = reason
      self.noteSequence = noteSequence
    }

    enum CodingKeys: String, CodingKey {
      case sequence, run, refusal, reason
      case eventType = "event_type"
      case skippedBy = "skipped_by"
      case skippedAt = "skipped_at"
      case noteSequence = "note_sequence"
    }

    /// "event 12 (RunEnqueued of run …)": for messages.
    package var eventDescription: String {
      "event \(sequence) (\(eventType)\(run.isEmpty ? "" : " of run \(run)"))"
    }
  }

  /// In the order of the log.
  package var decisions: [Decision] = []

  package init(decisions: [Decision] = []) { self.decisions = decisions.sorted { $0.sequence < $1.sequence } }

  static func path(logDirectory: String) -> String { logDirectory + "/SKIPPED" }

  /// The decisions of the log in `logDirectory`; none when it has no file.
  package static func read(logDirectory: String, fileSystem: any FileSystem) throws(QueueError) -> SkippedEvents {
    let path = path(logDirectory: logDirectory)
    guard try fileSystem.size(of: path) != nil else { return SkippedEvents() }
    let contents = try fileSystem.read(path, from: 0)
    guard let skipped = try? JSONDecoder().decode(SkippedEvents.self, from: Data(contents)),
      Set(skipped.decisions.map(\.sequence)).count == skipped.decisions.count
    else {
      throw QueueError(
        code: .corrupt,
        message:
          "\(path) is damaged: it does not say which events are skipped; restore it from a backup (each decision is a LogEventSkipped note in the log: `gps history ls --type LogEventSkipped`)"
      )
    }
    return SkippedEvents(decisions: skipped.decisions)
  }

  func write(logDirectory: String, fileSystem: any FileSystem) throws(QueueError) {
    try fileSystem.writeJSONAtomically(self, to: Self.path(logDirectory: logDirectory), what: "the skipped events")
  }

}

/// What a ``QueueState`` passes over in a replay: the recorded decisions, and, for `gps log
/// skip-event`, the sequences a user asks to skip, each checked to be refused. Not part of the
/// state's value: two states are equal when their contents are.
struct SkipDecisions: Sendable, Hashable {
  var decided: [UInt64: SkippedEvents.Decision] = [:]
  /// Sequences to skip if (and only if) the reducer refuses them; what it said goes to `found`.
  var candidates: Set<UInt64> = []
  var found: [UInt64: SkippedEvents.Decision] = [:]

  var isEmpty: Bool { decided.isEmpty && candidates.isEmpty }

  init(_ skipped: SkippedEvents = SkippedEvents(), candidates: Set<UInt64> = []) {
    for decision in skipped.decisions { decided[decision.sequence] = decision }
    self.candidates = candidates
  }

  static func == (lhs: Self, rhs: Self) -> Bool { true }

  func hash(into hasher: inout Hasher) {}
}

extension QueueState {
  /// Makes the state pass over the events the log's `SKIPPED` file names (replays only).
  package mutating func skip(_ skipped: SkippedEvents) {
    skipping = SkipDecisions(skipped, candidates: skipping.candidates)
  }

  /// Passes over `event` if a decision names `sequence` (true), or if it is a candidate the
  /// reducer refuses; refuses a candidate it would apply, and a decision for another event.
  mutating func skipIfDecided(_ event: RunEvent, sequence: UInt64) throws(QueueError) -> Bool {
    let run = event.run?.description ?? ""
    if let decision = skipping.decided[sequence] {
      guard decision.eventType == event.typeName, decision.run == run else {
        throw QueueError(
          code: .corrupt,
          message:
            "log/SKIPPED passes over \(decision.eventDescription), but event \(sequence) of the log is a \(event.typeName); the file belongs to another log: restore this log's own"
        )
      }
    } else if skipping.candidates.contains(sequence) {
      var trial = self
      trial.skipping = SkipDecisions()
      do throws(QueueError) {
        try trial.apply(event, sequence: sequence)
      } catch {
        skipping.found[sequence] = SkippedEvents.Decision(
          sequence: sequence, eventType: event.typeName, run: run, refusal: error.message, skippedBy: "",
          skippedAt: "", reason: "")
        lastSequence = sequence
        return true
      }
      throw QueueError(
        code: .invalidArgument,
        message:
          "event \(sequence) (\(event.typeName)) applies: only an event the reducer refuses is skipped; `gps history verify` names the one it refuses"
      )
    } else {
      return false
    }
    // The event's time is not taken: a refused event's time may be anything.
    lastSequence = sequence
    return true
  }

  /// What the candidates of a replay turned out to be: each refused event, with the reducer's words.
  var refusedCandidates: [UInt64: SkippedEvents.Decision] { skipping.found }
}
