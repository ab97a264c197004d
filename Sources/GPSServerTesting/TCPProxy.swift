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
  private struct State {
    var cut = false
    var stopped = false
    var sockets: [Int32] = []
    /// Connections that were open when a cut came: they stay mute for good.
    var dead: Set<Int32> = []
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
      state.dead.formUnion(state.sockets)
    }
  }

  /// New connections pass again.
  package func restore() { state.withLock { $0.cut = false } }

  /// Closes the listener and every connection.
  package func stop() {
    let sockets = state.withLock { state -> [Int32] in
      state.stopped = true
      return state.sockets
    }
    shutdown(listener, Int32(SHUT_RDWR))
    close(listener)
    for fd in sockets { shutdown(fd, Int32(SHUT_RDWR)) }
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
      state.withLock { $0.sockets += [client, upstream] }
      Thread { [self] in pump(from: client, to: upstream) }.start()
      Thread { [self] in pump(from: upstream, to: client) }.start()
    }
  }

  /// Copies `source` to `destination` until either closes; drops what comes while the pair is cut.
  private func pump(from source: Int32, to destination: Int32) {
    var buffer = [UInt8](repeating: 0, count: 65536)
    defer {
      shutdown(destination, Int32(SHUT_WR))
      state.withLock { state in
        state.sockets.removeAll { $0 == source }
        if !state.sockets.contains(destination) { state.dead.remove(source) }
      }
      close(source)
    }
    while true {
      let count = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
      if count < 0, errno == EINTR { continue }
      guard count > 0 else { return }
      let mute = state.withLock { $0.dead.contains(source) || $0.dead.contains(destination) || $0.stopped }
      if mute { continue }
      var offset = 0
      while offset < count {
        let written = buffer.withUnsafeBytes { write(destination, $0.baseAddress! + offset, count - offset) }
        if written < 0, errno == EINTR { continue }
        guard written > 0 else { return }
        offset += written
      }
    }
  }
}
