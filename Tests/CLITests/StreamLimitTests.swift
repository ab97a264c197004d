import Control
import Flows
import Foundation
import GPSModel
import GPSTestSupport
import GRPCCore
import RPC
import SwiftProtobuf
import Synchronization
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
        "server", "start", "--data-dir", root.path + "/data", "--port", "0", "--http-port", "0", "--no-scheduler",
        "--max-connections", "3", "--max-connections-per-host", "2", "--handshake-timeout", "2s",
      ])
      let address = try ServiceAddress(parsing: try await server.listeningAddress(), what: "server")
      // The web server's connections too: one that sends no request is closed.
      let webPort = try #require(URL(string: try await server.webAddress())?.port)
      let web = try IdleConnection(port: webPort)
      #expect(!web.closedByServer(within: .milliseconds(500)))
      #expect(web.closedByServer(within: .seconds(10)))
      let said = await server.waitForOutput { _, stderr in stderr.contains("connections: at most") }
      #expect(
        said && server.stderr.contains("connections: at most 3, 2 per host, 2s to start a call"), "\(server.stderr)")
      // Three from this host: one is closed at once (which one depends on the order the server's
      // threads take them), the other two when the handshake timeout passes.
      let idle = try (0..<3).map { _ in try IdleConnection(port: address.port) }
      let atOnce = idle.filter { $0.closedByServer(within: .milliseconds(300)) }
      #expect(atOnce.count == 1)
      for connection in idle where !atOnce.contains(where: { $0 === connection }) {
        #expect(connection.closedByServer(within: .seconds(10)))
      }
      #expect(server.stderr.contains("it holds its limit of 2 connections"), "\(server.stderr)")
      // A real client gets its call through once the idle ones are gone.
      try await withControlClient(address) { control in
        _ = try await control.listRuns(.init())
      }
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0, "\(server.stderr)")
    }
  }

  /// Beyond the server's limit, a new connection is not refused: it waits for a place, and its call
  /// goes through once the connection holding the place ends.
  @Test func aConnectionBeyondTheLimitWaitsForAPlace() async throws {
    try await withTemporaryDirectory { root in
      // A handshake timeout far beyond the test: the place is freed by the test, not by a timer
      // that a loaded machine could also run out on the waiting connection.
      let server = try GPSProcess([
        "server", "start", "--data-dir", root.path + "/data", "--port", "0", "--no-web", "--no-scheduler",
        "--max-connections", "1", "--max-connections-per-host", "1", "--handshake-timeout", "120s",
      ])
      let address = try ServiceAddress(parsing: try await server.listeningAddress(), what: "server")
      let idle = try IdleConnection(port: address.port)
      let warned = await server.waitForOutput(limit: .seconds(30)) { _, stderr in
        stderr.contains("holds its limit of 1 connections")
      }
      #expect(warned, "\(server.stderr)")
      let answered = AnsweredFlag()
      try await withControlClient(address) { control in
        try await withThrowingTaskGroup(of: Void.self) { group in
          group.addTask {
            _ = try await control.listRuns(.init())
            answered.set()
          }
          // The client's connection is established in the kernel, beyond the limit: it waits.
          try await eventually("the client's connection to wait in the backlog") {
            IdleConnection.established(toPort: address.port) >= 2
          }
          #expect(!answered.value, "answered beyond the limit")
          idle.hangUp()
          try await group.waitForAll()
        }
      }
      #expect(answered.value)
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0, "\(server.stderr)")
    }
  }

  /// The test above counts connections in the kernel's table: all of them, however many sockets
  /// the machine has (a one-page read saw 27, and missed the client's on a loaded machine).
  @Test func theKernelsConnectionTableIsReadToItsEnd() throws {
    let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #expect(listener >= 0)
    defer { close(listener) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
        bind(listener, pointer, length) == 0 && listen(listener, 256) == 0
          && getsockname(listener, pointer, &length) == 0
      }
    }
    #expect(bound)
    let port = Int(UInt16(bigEndian: address.sin_port))
    let connections = try (0..<100).map { _ in try IdleConnection(port: port) }
    #expect(IdleConnection.established(toPort: port) == connections.count)
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

/// Set once a call has been answered; read by the test while the call may still be running.
private final class AnsweredFlag: Sendable {
  private let state = Mutex(false)

  var value: Bool { state.withLock { $0 } }

  func set() { state.withLock { $0 = true } }
}
