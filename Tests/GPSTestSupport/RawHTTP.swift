import Foundation

/// Sends `request` as it is (every byte, headers a client library would rewrite, such as Host,
/// included) to `host:port` over TCP, and returns what came back until the server closed or
/// `timeout` passed: for requests that an HTTP library will not send.
public func rawHTTP(_ request: String, host: String = "127.0.0.1", port: Int, timeout: Duration = .seconds(30)) throws
  -> String
{
  try rawHTTP(bytes: Array(request.utf8), host: host, port: port, timeout: timeout)
}

/// ``rawHTTP(_:host:port:timeout:)`` with bytes that need not be UTF-8.
public func rawHTTP(bytes: [UInt8], host: String = "127.0.0.1", port: Int, timeout: Duration = .seconds(30)) throws
  -> String
{
  let socket = try connectTCP(host: host, port: port)
  defer { close(socket) }
  var seconds = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
  setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &seconds, socklen_t(MemoryLayout<timeval>.size))
  var sent = 0
  while sent < bytes.count {
    let count = bytes[sent...].withUnsafeBytes { send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    guard count > 0 else { throw POSIXError(.init(rawValue: errno) ?? .EPIPE) }
    sent += count
  }
  var answer: [UInt8] = []
  var buffer = [UInt8](repeating: 0, count: 65536)
  while true {
    let count = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
    if count <= 0 { break }
    answer.append(contentsOf: buffer[..<count])
  }
  return String(decoding: answer, as: UTF8.self)
}

/// A TCP connection that sends nothing, as a client stalled in its handshake would.
public final class IdleConnection {
  let socket: Int32

  public init(host: String = "127.0.0.1", port: Int) throws {
    socket = try connectTCP(host: host, port: port)
  }

  deinit { close(socket) }

  /// Ends the connection from this side (the server reads its end).
  public func hangUp() { shutdown(socket, Int32(SHUT_RDWR)) }

  /// Connections to `port` on loopback that the kernel has established (from the clients' side),
  /// whether or not the server has accepted them yet: from `/proc/net/tcp`, read to its end
  /// (`String(contentsOfFile:)` reads one page of a /proc file, 27 sockets, and a loaded machine
  /// has hundreds).
  public static func established(toPort port: Int) -> Int {
    guard let file = FileHandle(forReadingAtPath: "/proc/net/tcp"), let data = try? file.readToEnd() else { return 0 }
    let text = String(decoding: data, as: UTF8.self)
    return text.split(separator: "\n").dropFirst().filter { line in
      // sl local_address rem_address st …: a client's socket has the server's port as its remote one.
      let fields = line.split(separator: " ")
      guard fields.count > 3, fields[3] == "01", let colon = fields[2].lastIndex(of: ":") else { return false }
      return Int(fields[2][fields[2].index(after: colon)...], radix: 16) == port
    }.count
  }

  /// Whether the server closed the connection within `timeout` (what it sends before, such as an
  /// HTTP/2 server's settings, is read and dropped).
  public func closedByServer(within timeout: Duration) -> Bool {
    let deadline = ContinuousClock.now + timeout
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
      let left = deadline - ContinuousClock.now
      guard left > .zero else { return false }
      var wait = timeval(
        tv_sec: Int(left.components.seconds), tv_usec: max(1, Int(left.components.attoseconds / 1_000_000_000_000)))
      setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
      let count = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
      if count == 0 { return true }
      if count < 0 {
        if errno == EINTR { continue }
        // A timeout, or a reset (a close with data unread).
        return errno != EAGAIN && errno != EWOULDBLOCK
      }
    }
  }
}

/// A TCP socket connected to `host:port` (IPv4), or the error that refused it.
func connectTCP(host: String, port: Int) throws -> Int32 {
  let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  guard socket >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_port = in_port_t(UInt16(port).bigEndian)
  inet_pton(AF_INET, host, &address.sin_addr)
  let connected = withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
      connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
    }
  }
  guard connected == 0 else {
    let error = POSIXError(.init(rawValue: errno) ?? .ECONNREFUSED)
    close(socket)
    throw error
  }
  return socket
}
