import Foundation
import GPSTestSupport
import RPC
import ReferenceFlow
import Services
import Testing

/// The `gps` binary's user-facing behaviour: output, errors and exit codes.
@Suite struct CommandLineTests {
  static let sample = #"{"object_storage_urls": ["a"], "dataset": "b"}"#

  @Test func clientPrintsTheResponseOfAThenB() async throws {
    try await withTemporaryDirectory { root in
      try root.writeFile("a", Array("hello".utf8))
      try await withRunningServices(objectRoot: root) { a, b in
        let text = try await GPSProcess.run(["client", "--data-info", Self.sample, "--a", "\(a)", "--b", "\(b)"])
        #expect(text.status == 0, "\(text.stderr)")
        // SHA-256 of the single digest of "hello".
        #expect(text.stdout.hasPrefix("processed dataset 'b': 1 object, 5 bytes, digest "))

        let json = try await GPSProcess.run(
          ["client", "--data-info", Self.sample, "--a", "\(a)", "--b", "\(b)", "--output", "json"])
        #expect(json.status == 0)
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(object?["dataset"] as? String == "b")
        #expect(object?["object_count"] as? Int == 1)
        #expect(object?["total_bytes"] as? Int == 5)
        let expectedDigest = DatasetDigest.compute(objectDigests: [
          "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        ])
        #expect(object?["dataset_digest"] as? String == expectedDigest)
      }
    }
  }

  @Test func clientErrorsAreOneLineAndNonZero() async throws {
    try await withTemporaryDirectory { root in
      try root.writeFile("a", Array("hello".utf8))
      try await withRunningServices(objectRoot: root) { a, b in
        let cases: [(arguments: [String], expected: String)] = [
          (["--data-info", #"{"object_storage_urls": ["missing"], "dataset": "b"}"#], "NOT_FOUND: 'missing'"),
          (["--data-info", #"{"object_storage_urls": ["../x"], "dataset": "b"}"#], "INVALID_ARGUMENT"),
          (
            ["--data-info", #"{"object_storage_url": ["a"], "dataset": "b"}"#],
            "data_info.object_storage_url: unknown field; did you mean object_storage_urls?"
          ),
          (["--data-info", #"{"object_storage_urls": ["a"]"#], "not valid JSON: the JSON ends inside an object"),
          (["--data-info", Self.sample, "--timeout", "soon"], "--timeout"),
        ]
        for (arguments, expected) in cases {
          let result = try await GPSProcess.run(["client"] + arguments + ["--a", "\(a)", "--b", "\(b)"])
          #expect(result.status != 0, "\(arguments)")
          #expect(result.stderr.contains(expected), "\(arguments): \(result.stderr)")
          #expect(result.stderr.hasPrefix("gps: error: "))
          #expect(result.stderr.filter { $0 == "\n" }.count == 1, "\(result.stderr)")
          #expect(result.stdout.isEmpty)
        }
      }
    }
  }

  @Test func anUnreachableServiceIsNamed() async throws {
    let result = try await GPSProcess.run([
      "client", "--data-info", Self.sample, "--a", "127.0.0.1:1", "--b", "127.0.0.1:1",
    ])
    #expect(result.status != 0)
    #expect(result.stderr.contains("service A at 127.0.0.1:1 is unreachable"), "\(result.stderr)")
    // The library says what failed; the command adds what to do.
    #expect(result.stderr.contains("; start it with `gps server a` or pass --a HOST:PORT"), "\(result.stderr)")
    #expect(result.stderr.filter { $0 == "\n" }.count == 1)
  }

  @Test(arguments: [
    (["server", "a", "--bogus"], "--bogus"),
    (["server", "a", "--port", "70000"], "--port 70000"),
    (["server", "b", "--fail-rate", "2"], "--fail-rate"),
    (["server", "b", "--latency", "fast"], "--latency"),
    (
      ["server", "a", "--port", "0", "--object-root", "/nonexistent/objects"],
      "object root '/nonexistent/objects' does not exist; create it or pass --object-root DIR"
    ),
    (["server", "a", "--host", "not-an-ip", "--port", "0"], "not an IP address"),
    (["client"], "--data-info"),
    (["client", "--data-info", "{}", "--a", "nowhere"], "--a 'nowhere'"),
    (["frobnicate"], "frobnicate"),
  ])
  func badFlagsExitNonZeroWithOneLine(arguments: [String], expected: String) async throws {
    let result = try await GPSProcess.run(arguments)
    #expect(result.status != 0)
    #expect(result.stderr.hasPrefix("gps: error: "), "\(result.stderr)")
    #expect(result.stderr.contains(expected), "\(result.stderr)")
    #expect(result.stderr.filter { $0 == "\n" }.count == 1, "\(result.stderr)")
  }

  @Test func versionAndHelp() async throws {
    let version = try await GPSProcess.run(["--version"])
    #expect(version.status == 0)
    // The release, and the allocator that serves the process: jemalloc, linked into `gps`.
    #expect(version.stdout.wholeMatch(of: /\d+\.\d+\.\d+ \(jemalloc \d+\.\d+\.\d+\)\n/) != nil, "\(version.stdout)")
    let help = try await GPSProcess.run(["--help"])
    #expect(help.status == 0)
    for word in ["server", "client"] { #expect(help.stdout.contains(word)) }
    let serverHelp = try await GPSProcess.run(["server", "a", "--help"])
    #expect(serverHelp.stdout.contains("--object-root"))
    #expect(serverHelp.stdout.contains("--fail-rate"))
  }
}
