import ArgumentParser
import Flows
import Foundation
import GPSModel

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
      HistoryCommand.self, ClientCommand.self, LogCommand.self, ClusterCommand.self,
    ]
  )

  /// Runs the command; every failure ends as one line on stderr and a non-zero exit, never a trace.
  static func main() async {
    // A closed pipe is an EPIPE from write (handled in writeAll), not a signal that kills us.
    signal(SIGPIPE, SIG_IGN)
    if let problem = invalidArgument() {
      writeStandardError("gps: error: \(problem)\n")
      Foundation.exit(64)
    }
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
      // Whatever echoes input stays one readable line.
      if line.utf8.count > 4096 {
        line = String(decoding: line.utf8.prefix(4096), as: UTF8.self) + "… (cut at 4096 of \(line.utf8.count) bytes)"
      }
      writeStandardError("gps: error: \(line)\n")
      if let failure = error as? CommandFailure { Foundation.exit(failure.status) }
      Foundation.exit(code.rawValue == 0 ? 1 : code.rawValue)
    }
  }
}

/// A failure the user can act on; its message is printed as is.
struct CommandFailure: Error, CustomStringConvertible {
  var message: String
  /// The exit status (1 unless said otherwise, e.g. ``watchLost``).
  var status: Int32 = 1
  var description: String { message }

  init(_ message: String, status: Int32 = 1) {
    self.message = message
    self.status = status
  }

  /// `--watch` could not follow the run to its end (the server went away): not the run's outcome.
  static let watchLost: Int32 = 5
}

func writeStandardError(_ text: String) {
  writeAll(2, Array(text.utf8))
}

/// Prints one line on stdout at once (no buffering), so a parent process reading a pipe sees it.
func printLine(_ text: String) {
  writeAll(1, Array((text + "\n").utf8))
}

/// Writes every byte to `fd`. A reader that went away (`gps … | head -1`) ends the command quietly
/// with status 0: what it asked for was printed.
func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
  var done = 0
  while done < bytes.count {
    let count = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
    if count < 0, errno == EINTR { continue }
    if count < 0, errno == EPIPE { exit(0) }
    guard count > 0 else { return }
    done += count
  }
}

/// An argument that is not valid UTF-8, named with its option: Swift's `CommandLine.arguments`
/// would silently replace the bad bytes with U+FFFD, and that would be stored.
func invalidArgument() -> String? {
  for index in 1..<Int(CommandLine.argc) {
    guard let pointer = CommandLine.unsafeArgv[index], String(validatingCString: pointer) == nil else { continue }
    let length = strlen(pointer)
    let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(pointer).assumingMemoryBound(to: UInt8.self), count: length)
    // The valid prefix: up to the first byte that does not decode.
    var parser = Unicode.UTF8.ForwardParser()
    var iterator = bytes.makeIterator()
    var offset = 0
    decoding: while true {
      switch parser.parseScalar(from: &iterator) {
      case .valid(let scalar): offset += scalar.count
      case .emptyInput, .error: break decoding
      }
    }
    let before = String(decoding: bytes[..<offset], as: UTF8.self)
    let option: String
    if before.hasPrefix("--") {
      option = String(before.prefix { $0 != "=" })
    } else if index > 1, let previous = CommandLine.unsafeArgv[index - 1].flatMap({ String(validatingCString: $0) }),
      previous.hasPrefix("-")
    {
      option = previous
    } else {
      option = "argument \(index)"
    }
    let name = before.prefix { $0 != "=" }
    let path = option == "--param" && before.contains("=") ? " (parameter \(name))" : ""
    return
      "\(option)\(path): the value is not valid UTF-8 (a bad byte after \(JSONValue.quoted(String(before.suffix(40))))); give UTF-8 text"
  }
  return nil
}
