import ArgumentParser
import Foundation

/// The `gps` command: thin argument parsing over the RPC, Queue and Flows libraries.
@main
struct GPS: AsyncParsableCommand {
  static let version = "0.1.0"

  static let configuration = CommandConfiguration(
    commandName: "gps",
    abstract: "GPS: an event-sourced workflow orchestrator whose task steps call gRPC services.",
    discussion: """
      Start the reference services with `gps server a` and `gps server b`, then call them with
      `gps client --data-info '{"object_storage_urls": ["a"], "dataset": "b"}'`.
      """,
    version: "\(version) (\(Allocator.description))",
    subcommands: [
      ServerCommand.self, SchedulerCommand.self, DeploymentCommand.self, EnqueueCommand.self, FlowRunCommand.self,
      HistoryCommand.self, ClientCommand.self, LogCommand.self,
    ]
  )

  /// Runs the command; every failure ends as one line on stderr and a non-zero exit, never a trace.
  static func main() async {
    do {
      var command = try await asyncParseAsRoot()
      if var asyncCommand = command as? any AsyncParsableCommand {
        try await asyncCommand.run()
      } else {
        try command.run()
      }
    } catch let exit as ExitCode {
      // A watched run that did not complete: already reported on stdout.
      Foundation.exit(exit.rawValue)
    } catch {
      let code = exitCode(for: error)
      if code == .success {
        // --help and --version
        print(fullMessage(for: error))
        Foundation.exit(0)
      }
      let message = self.message(for: error)
        .split(separator: "\n", omittingEmptySubsequences: true)
        .map { $0.trimmingCharacters(in: .whitespaces) }
        .joined(separator: " ")
      var line = message.hasPrefix("Error: ") ? String(message.dropFirst("Error: ".count)) : message
      if error is CommandFailure == false, code.rawValue == ExitCode.validationFailure.rawValue {
        // ArgumentParser's full message ends with "See 'gps server a --help' for more information."
        let full = fullMessage(for: error)
        if let start = full.range(of: "See '"), let end = full[start.upperBound...].firstIndex(of: "'") {
          line += " (see `\(full[start.upperBound..<end])`)"
        } else {
          line += " (see `gps --help`)"
        }
      }
      writeStandardError("gps: error: \(line)\n")
      Foundation.exit(code.rawValue == 0 ? 1 : code.rawValue)
    }
  }
}

/// A failure the user can act on; its message is printed as is.
struct CommandFailure: Error, CustomStringConvertible {
  var message: String
  var description: String { message }

  init(_ message: String) { self.message = message }
}

func writeStandardError(_ text: String) {
  FileHandle.standardError.write(Data(text.utf8))
}

/// Prints one line on stdout and flushes it, so a parent process reading a pipe sees it at once.
func printLine(_ text: String) {
  FileHandle.standardOutput.write(Data((text + "\n").utf8))
}
