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
  /// Connections are bounded too: a host beyond its share is closed at once, one that never starts
  /// a call (a stalled TLS or HTTP/2 handshake) is closed after the handshake timeout, and beyond
  /// the server's limit a new connection waits until a place frees, then is served.
  @Test func idleConnectionsAreBoundedAndClosed() async throws {
    try await withTemporaryDirectory { root in
      let server = try GPSProcess([
        "server", "start", "--data-dir", root.path + "/data", "--port", "0", "--no-web", "--no-scheduler",
        "--max-connections", "3", "--max-connections-per-host", "2", "--handshake-timeout", "1s",
      ])
      let address = try ServiceAddress(parsing: try await server.listeningAddress(), what: "server")
      let said = await server.waitForOutput { _, stderr in stderr.contains("connections: at most") }
      #expect(
        said && server.stderr.contains("connections: at most 3, 2 per host, 1s to start a call"), "\(server.stderr)")
      let first = try IdleConnection(port: address.port)
      let second = try IdleConnection(port: address.port)
      // The host's third is closed at once; the two idle ones within the handshake timeout.
      let third = try IdleConnection(port: address.port)
      #expect(third.closedByServer(within: .seconds(5)))
      #expect(!first.closedByServer(within: .milliseconds(200)), "closed before its handshake timeout")
      #expect(first.closedByServer(within: .seconds(10)))
      #expect(second.closedByServer(within: .seconds(10)))
      #expect(server.stderr.contains("it holds its limit of 2 connections"), "\(server.stderr)")
      // A real client gets its call through once the idle ones are gone.
      try await withControlClient(address) { control in
        _ = try await control.listRuns(.init())
      }
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0, "\(server.stderr)")
    }
  }

  /// Beyond the server's limit, a new connection is not refused: it waits for a place.
  @Test func aConnectionBeyondTheLimitWaitsForAPlace() async throws {
    try await withTemporaryDirectory { root in
      let server = try GPSProcess([
        "server", "start", "--data-dir", root.path + "/data", "--port", "0", "--no-web", "--no-scheduler",
        "--max-connections", "1", "--max-connections-per-host", "1", "--handshake-timeout", "1s",
      ])
      let address = try ServiceAddress(parsing: try await server.listeningAddress(), what: "server")
      let idle = try IdleConnection(port: address.port)
      _ = idle
      try await withControlClient(address) { control in
        _ = try await control.listRuns(.init())
      }
      #expect(server.stderr.contains("holds its limit of 1 connections"), "\(server.stderr)")
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0, "\(server.stderr)")
    }
  }

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
