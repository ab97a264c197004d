package import Foundation
import Synchronization

/// A TCP proxy on 127.0.0.1 (a free port) to `target`, that a test can cut: while cut, what either
/// side sends is dropped (the other never answers, as across a partition) and new connections are
/// closed at once; restored, new connections pass again (those cut stay mute: a partition that
/// heals leaves the old connections dead, as their peers gave up on them). One thread per
/// direction per connection; ``stop()`` closes everything.
package final class TCPProxy: Sendable {
  package let port: Int
  private let target: Int
  private let listener: Int32
  /// One proxied connection. Its two sockets are closed only when both directions have ended, under
  /// the proxy's lock, so no file descriptor number is shut down or muted after the kernel gave it
  /// to a newer connection.
  private final class Connection: Sendable {
    let client: Int32
    let upstream: Int32
    init(client: Int32, upstream: Int32) {
      self.client = client
      self.upstream = upstream
    }
  }
  private struct State {
    var cut = false
    var stopped = false
    var open: [ObjectIdentifier: (connection: Connection, ended: Int)] = [:]
    /// Connections that were open when a cut came: they stay mute for good.
    var dead: Set<ObjectIdentifier> = []
  }
  private let state = Mutex(State())

  /// Forwards 127.0.0.1:`port` (a free one) to 127.0.0.1:`target`.
  package init(to target: Int) throws {
    self.target = target
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw PostgresServerError("proxy socket: errno \(errno)") }
    var yes: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
    var address = Self.loopback(port: 0)
    let bound = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0, listen(fd, 64) == 0 else {
      close(fd)
      throw PostgresServerError("proxy bind/listen: errno \(errno)")
    }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    getsockname(
      fd, withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { $0 } },
      &length)
    port = Int(UInt16(bigEndian: address.sin_port))
    listener = fd
    Thread { [self] in accept() }.start()
  }

  /// Drops everything from now on, until ``restore()``; the connections open now stay mute.
  package func cut() {
    state.withLock { state in
      state.cut = true
      state.dead.formUnion(state.open.keys)
    }
  }

  /// New connections pass again.
  package func restore() { state.withLock { $0.cut = false } }

  /// Closes the listener and every connection.
  package func stop() {
    state.withLock { state in
      state.stopped = true
      for (connection, _) in state.open.values {
        shutdown(connection.client, Int32(SHUT_RDWR))
        shutdown(connection.upstream, Int32(SHUT_RDWR))
      }
    }
    shutdown(listener, Int32(SHUT_RDWR))
    close(listener)
  }

  private static func loopback(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return address
  }

  private func accept() {
    while true {
      let client = Foundation.accept(listener, nil, nil)
      guard client >= 0 else {
        if errno == EINTR { continue }
        return
      }
      let (cut, stopped) = state.withLock { ($0.cut, $0.stopped) }
      if cut || stopped {
        close(client)
        if stopped { return }
        continue
      }
      let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
      var address = Self.loopback(port: target)
      let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
          connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
      }
      guard connected == 0 else {
        close(client)
        close(upstream)
        continue
      }
      let connection = Connection(client: client, upstream: upstream)
      state.withLock { $0.open[ObjectIdentifier(connection)] = (connection, 0) }
      Thread { [self] in pump(connection, from: client, to: upstream) }.start()
      Thread { [self] in pump(connection, from: upstream, to: client) }.start()
    }
  }

  /// Copies `source` to `destination` until either closes; drops what comes while the connection
  /// is cut. The last of the two directions to end closes both sockets.
  private func pump(_ connection: Connection, from source: Int32, to destination: Int32) {
    let id = ObjectIdentifier(connection)
    var buffer = [UInt8](repeating: 0, count: 65536)
    defer {
      state.withLock { state in
        shutdown(destination, Int32(SHUT_WR))
        guard let entry = state.open[id] else { return }
        if entry.ended == 0 {
          state.open[id]?.ended = 1
        } else {
          state.open[id] = nil
          state.dead.remove(id)
          close(connection.client)
          close(connection.upstream)
        }
      }
    }
    while true {
      let count = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
      if count < 0, errno == EINTR { continue }
      guard count > 0 else { return }
      let mute = state.withLock { $0.dead.contains(id) || $0.stopped }
      if mute { continue }
      var offset = 0
      while offset < count {
        let written = buffer.withUnsafeBytes {
          send(destination, $0.baseAddress! + offset, count - offset, Int32(MSG_NOSIGNAL))
        }
        if written < 0, errno == EINTR { continue }
        guard written > 0 else { return }
        offset += written
      }
    }
  }
}
