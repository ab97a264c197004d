import Foundation
import GPSTestSupport
import Synchronization
import Testing

/// The partition tests' proxy must itself be plain TCP while not cut: a connection closed while
/// others open must never take a newer one down with it (its file descriptor numbers are reused).
@Suite struct TCPProxyTests {
  /// Opens a connection to 127.0.0.1:`port`, sends PostgreSQL's SSLRequest and returns its one-byte
  /// answer ("S" or "N"), or nil when the connection was closed or failed first.
  static func askForTLS(port: Int) -> UInt8? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    guard connected == 0 else { return nil }
    let request: [UInt8] = [0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x2F]
    guard request.withUnsafeBytes({ send(fd, $0.baseAddress, 8, Int32(MSG_NOSIGNAL)) }) == 8 else { return nil }
    var answer: UInt8 = 0
    return read(fd, &answer, 1) == 1 ? answer : nil
  }

  @Test func connectionsOpenedWhileOthersCloseAllGetTheirAnswer() throws {
    let database = try SharedPostgres.database()
    let proxy = try TCPProxy(to: database.server.port)
    defer { proxy.stop() }
    let failures = Atomic<Int>(0)
    DispatchQueue.concurrentPerform(iterations: 8) { _ in
      for _ in 0..<100 where Self.askForTLS(port: proxy.port) == nil {
        failures.add(1, ordering: .relaxed)
      }
    }
    #expect(failures.load(ordering: .relaxed) == 0, "connections closed by the proxy before their answer")
  }
}
