import Control
import Foundation
import GPSTesting
import GRPCCore
import RPC
import SwiftProtobuf
import Testing

/// Following streams are bounded in all and per caller: beyond, RESOURCE_EXHAUSTED over gRPC and
/// 503 with Retry-After over HTTP; a place comes back when its stream ends.
@Suite struct StreamLimitTests {
  @Test func streamsBeyondTheLimitAreRefusedAndAPlaceComesBack() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      let server = try GPSProcess([
        "server", "start", "--data-dir", data, "--port", "0", "--http-port", "0", "--no-scheduler", "--max-streams",
        "4",
      ])
      let address = try ServiceAddress(parsing: try await server.listeningAddress(), what: "server")
      let web = WebClient(base: try await server.webAddress())
      let said = await server.waitForOutput { _, stderr in stderr.contains("streams: at most") }
      #expect(said && server.stderr.contains("streams: at most 4, 1 per caller"), "\(server.stderr)")
      try await withControlClient(address) { control in
        try await withThrowingTaskGroup(of: Void.self) { group in
          let opened = AsyncStream<Void>.makeStream()
          // One following stream of this (local) user: its share of 4 / 4.
          group.addTask {
            try await control.readHistory(.with { $0.follow = true }) { response in
              opened.continuation.yield()
              for try await _ in response.messages {}
            }
          }
          var waiting = opened.stream.makeAsyncIterator()
          _ = await waiting.next()
          try await eventually("the second stream refused") {
            do {
              try await control.readHistory(
                .with {
                  $0.limit = 1; $0.follow = true
                }
              ) { response in
                for try await _ in response.messages {}
              }
              return false
            } catch let error as RPCError {
              #expect(error.code == .resourceExhausted)
              #expect(error.message.contains("streams open, the limit per caller"), "\(error.message)")
              return true
            }
          }
          let sse = try await web.get("/api/history/stream")
          #expect(sse.status == 503, "\(sse.body)")
          #expect(sse.headers["retry-after"] == "5")
          #expect(sse.body.contains("the limit per caller"), "\(sse.body)")
          // A bounded read needs no place.
          _ = try await control.readHistory(.with { $0.follow = false }) { response in
            for try await _ in response.messages {}
          }
          group.cancelAll()
        }
        // The stream ended: its place is back.
        try await eventually("a place back") {
          do {
            try await control.readHistory(
              .with {
                $0.limit = 1; $0.follow = true
              }
            ) { response in
              for try await _ in response.messages {}
            }
            return true
          } catch { return false }
        }
      }
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0, "\(server.stderr)")
    }
  }
}
