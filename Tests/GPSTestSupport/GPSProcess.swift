public import Foundation

/// The built `gps` executable, run as a child process.
///
/// Output goes to files, not pipes: a pipe's write end can leak into a sibling spawned at the same
/// moment and keep the reader waiting for an end-of-file that only comes when the sibling exits.
public final class GPSProcess: Sendable {
  /// The example worker's executable (Examples/inventory-worker, built with GPS's public API
  /// only, beside `gps`): `$GPS_EXAMPLE_WORKER`, else there.
  public static var exampleWorker: URL {
    if let path = ProcessInfo.processInfo.environment["GPS_EXAMPLE_WORKER"] { return URL(fileURLWithPath: path) }
    return binary.deletingLastPathComponent().appendingPathComponent("InventoryWorker")
  }

  /// Where the `gps` binary is: `$GPS_BINARY`, else next to the test bundle (the build's bin directory).
  public static var binary: URL {
    if let path = ProcessInfo.processInfo.environment["GPS_BINARY"] { return URL(fileURLWithPath: path) }
    var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    // On macOS the runner lives inside the .xctest bundle.
    while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("gps").path), directory.path != "/" {
      directory.deleteLastPathComponent()
    }
    return directory.appendingPathComponent("gps")
  }

  /// The `gps-bench` executable beside `gps`: the stress drivers of the crash and scale tests.
  public static var bench: URL { binary.deletingLastPathComponent().appendingPathComponent("gps-bench") }

  private let process: Process
  private let outputDirectory: URL
  private let termination: AsyncStream<Int32>

  /// Starts `gps ARGUMENTS` in `directory` (default: the current directory).
  public init(
    _ arguments: [String], executable: URL? = nil, directory: URL? = nil, stdin: String? = nil,
    environment: [String: String] = [:]
  ) throws {
    outputDirectory = FileManager.default.temporaryDirectory
      .appendingPathComponent("gps-process-\(UUID().uuidString.lowercased())")
    try FileManager.default.createDirectory(at: outputDirectory, withIntermediateDirectories: true)
    let stdoutURL = outputDirectory.appendingPathComponent("stdout")
    let stderrURL = outputDirectory.appendingPathComponent("stderr")
    try Data().writeInPlace(to: stdoutURL)
    try Data().writeInPlace(to: stderrURL)

    process = Process()
    let (termination, terminated) = AsyncStream.makeStream(of: Int32.self, bufferingPolicy: .bufferingNewest(1))
    self.termination = termination
    process.terminationHandler = { process in
      terminated.yield(process.terminationStatus)
      terminated.finish()
    }
    process.executableURL = executable ?? Self.binary
    // Servers started by tests serve their web UI on a free port, not the fixed default one.
    let web =
      arguments.starts(with: ["server", "start"]) && !arguments.contains("--http-port")
      && !arguments.contains("--no-web")
    process.arguments = arguments + (web ? ["--http-port", "0"] : [])
    if let directory { process.currentDirectoryURL = directory }
    if !environment.isEmpty {
      process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
    process.standardError = try FileHandle(forWritingTo: stderrURL)
    if let stdin {
      let input = outputDirectory.appendingPathComponent("stdin")
      try Data(stdin.utf8).writeInPlace(to: input)
      process.standardInput = try FileHandle(forReadingFrom: input)
    } else {
      process.standardInput = FileHandle.nullDevice
    }
    try process.run()
  }

  deinit {
    if process.isRunning { process.terminate() }
    try? FileManager.default.removeItem(at: outputDirectory)
  }

  public var stdout: String { read("stdout") }
  public var stderr: String { read("stderr") }
  public var processIdentifier: Int32 { process.processIdentifier }

  private func read(_ name: String) -> String {
    let data = (try? Data(contentsOf: outputDirectory.appendingPathComponent(name))) ?? Data()
    return String(decoding: data, as: UTF8.self)
  }

  /// Waits until the output satisfies `predicate`, the process has exited, or `limit` has passed
  /// (a process that hangs fails the test that checks the output next, rather than hanging it);
  /// returns whether the output satisfied `predicate`.
  ///
  /// Checks every few milliseconds: a wait for a condition, not a fixed delay.
  @discardableResult
  public func waitForOutput(
    limit: Duration = .seconds(120), _ predicate: @escaping @Sendable (_ stdout: String, _ stderr: String) -> Bool
  ) async -> Bool {
    let deadline = ContinuousClock.now + limit
    while !predicate(stdout, stderr) {
      guard process.isRunning, ContinuousClock.now < deadline else { return predicate(stdout, stderr) }
      try? await Task.sleep(for: .milliseconds(5))
    }
    return true
  }

  /// Waits for a `listening on HOST:PORT` line and returns the address.
  public func listeningAddress() async throws -> String {
    await waitForOutput { stdout, _ in stdout.split(separator: "\n").contains { $0.hasPrefix("listening on ") } }
    guard let line = stdout.split(separator: "\n").first(where: { $0.hasPrefix("listening on ") }) else {
      throw ProcessFailure(message: "gps did not report its address; stderr: \(stderr)")
    }
    return String(line.dropFirst("listening on ".count))
  }

  public func signal(_ signal: Int32) {
    kill(process.processIdentifier, signal)
  }

  /// Waits for the process to exit and returns its exit status. Call it once.
  public func waitForExit() async -> Int32 {
    for await status in termination { return status }
    return process.terminationStatus
  }

  /// Runs `gps ARGUMENTS` to completion.
  public static func run(
    _ arguments: [String], executable: URL? = nil, directory: URL? = nil, stdin: String? = nil,
    environment: [String: String] = [:]
  ) async throws -> (status: Int32, stdout: String, stderr: String) {
    let process = try GPSProcess(
      arguments, executable: executable, directory: directory, stdin: stdin, environment: environment)
    let status = await process.waitForExit()
    return (status, process.stdout, process.stderr)
  }
}

public struct ProcessFailure: Error, CustomStringConvertible {
  public var message: String

  public init(message: String) { self.message = message }
  public var description: String { message }
}
