import Control
import Foundation
import GPSModel
import NIOCore

/// The entry point for coverage-guided fuzzing of what the web server parses from a request
/// (`make fuzz`), and for replaying its corpus in tests.
package enum WebFuzzing {
  /// `data` as lines: each is given to every parser of request values (sequences, times, page
  /// sizes, durations, Host headers, sign-in targets, Authorization headers), and the whole as a
  /// JSON body. Each answers or refuses; what it answers keeps its promise.
  package static func request(_ data: [UInt8]) {
    let hosts = HostCheck(boundHost: "127.0.0.1", publicURL: URL(string: "https://gps.example.com")) { 4280 }
    for line in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false) {
      let text = String(line)
      if let number = try? Site.number(text, "after") {
        precondition(number <= Site.maximumSequence, "after=\(text) gave \(number)")
      }
      _ = try? Site.time(text, "from_time")
      if let limit = try? Site.limit(text, default: 100, maximum: 1000) { precondition((1...1000).contains(limit)) }
      if let duration = Site.parseDuration(text) { precondition(duration >= .zero) }
      _ = Site.parseTime(text)
      _ = hosts.refusal(authority: text, secure: false)
      let next = Pages.sameSitePath(text)
      precondition(
        next == "/"
          || (next.hasPrefix("/") && !next.hasPrefix("//") && !next.contains("\\")
            && !next.unicodeScalars.contains { $0.value < 0x20 }),
        "next=\(text) gave \(next)")
      if let token = AccessTokens.bearerToken(text) { precondition(!token.isEmpty) }
    }
    _ = try? Site.json(ByteBuffer(bytes: data))
  }
}
