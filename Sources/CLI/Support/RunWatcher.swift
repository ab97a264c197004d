import ArgumentParser
import Control
import Flows
import Foundation
import GPSModel
import GRPCCore
import Queue
import SwiftProtobuf

/// `--watch`: prints a run's events as they happen, then its outcome, and ends with the exit
/// status of that outcome (0 only for Completed).
struct RunWatcher {
  var output: OutputFormat
  /// Decodes results for display.
  var types = ResultTypes.none

  init(output: OutputFormat) { self.output = output }

  /// Through the server: only durable events, ending when the run is final.
  func watch(runID: String, control: ControlClient) async throws {
    var watcher = self
    watcher.types = await ServerAnswers(control: control).resultTypes()
    try await watcher.watchWithTypes(runID: runID, control: control)
  }

  private func watchWithTypes(runID: String, control: ControlClient) async throws {
    let final = try await control.watchRun(.with { $0.runID = runID }) { response in
      var final: RunEvent?
      for try await event in response.messages {
        show(event.sequence, event.event)
        if EventText.stateAfter(event.event)?.isTerminal == true { final = event.event }
      }
      return final
    }
    try finish(runID: runID, final: final)
  }

  /// Without a server: follows the log file until the run's final event (a server started later
  /// in another terminal executes it).
  func follow(runID: RunID, from sequence: UInt64, dataDirectory: String) async throws {
    var watcher = self
    watcher.types = (try? readQueue(dataDirectory)).map { ResultTypes(state: $0.state) } ?? .none
    try await watcher.followWithTypes(runID: runID, from: sequence, dataDirectory: dataDirectory)
  }

  private func followWithTypes(runID: RunID, from sequence: UInt64, dataDirectory: String) async throws {
    if output == .table {
      printLine("waiting for a server to execute it (start one with `gps server start`); Ctrl-C stops watching")
    }
    var final: RunEvent?
    try await LogReader(directory: dataDirectory).follow(from: sequence) { record in
      let event = try RunEvent(record)
      guard event.run == runID else { return true }
      show(record.sequence, event)
      if EventText.stateAfter(event)?.isTerminal == true {
        final = event
        return false
      }
      return true
    }
    try finish(runID: runID.description, final: final)
  }

  func show(_ sequence: UInt64, _ event: RunEvent) {
    switch output {
    case .json:
      printLine(EventText.json(sequence: sequence, event: event, types: types).text)
    case .table:
      let state = EventText.stateAfter(event).map { "\($0)" } ?? ""
      let details = EventText.details(event, types: types)
      printLine(
        "\(event.time)  \(state.padding(toLength: 13, withPad: " ", startingAt: 0))  \(event.typeName.padding(toLength: 20, withPad: " ", startingAt: 0))  \(details)"
          .trimmingCharacters(in: .whitespaces))
    }
  }

  func finish(runID: String, final: RunEvent?) throws {
    guard let final, let state = EventText.stateAfter(final) else {
      throw CommandFailure(
        "the watch of run \(runID) ended before the run did; see where it is with `gps flow-run inspect \(runID)`",
        status: CommandFailure.watchLost)
    }
    if output == .table {
      switch final.kind {
      case .completed(let completed):
        printLine("run \(runID) \(state)")
        if let result = EventText.json(of: completed.result, type: completed.resultType, types: types) {
          printLine("result (\(completed.resultType)):")
          printLine(result.prettyText)
        }
      case .failed(let e): printLine("run \(runID) Failed: \(e.reason)")
      case .timedOut(let e): printLine("run \(runID) TimedOut: \(e.reason)")
      case .cancelled(let e): printLine("run \(runID) Cancelled: \(e.reason)")
      case .crashed(let e): printLine("run \(runID) Crashed: \(e.reason)")
      default: printLine("run \(runID) \(state)")
      }
    }
    switch state {
    case .completed, .cached: return
    case .failed: throw ExitCode(1)
    case .timedOut: throw ExitCode(2)
    case .cancelled: throw ExitCode(3)
    default: throw ExitCode(4)
    }
  }
}
