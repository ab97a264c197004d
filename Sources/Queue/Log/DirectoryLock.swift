#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// An exclusive `flock` on `DIR/LOCK`: one writer per data directory. The file holds the owner's pid
/// so a second writer can say who has it. The kernel drops the lock when the process dies.
public final class DirectoryLock: Sendable {
  public let path: String
  private let fd: Int32

  /// Takes the lock or fails at once, naming the directory and the process that holds it.
  public init(directory: String) throws(QueueError) {
    path = directory + "/LOCK"
    let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw PosixFileSystem.failure("open", path) }
    guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
      let code = errno
      let holder = Self.readHolder(fd)
      close(fd)
      guard code == EWOULDBLOCK else { throw PosixFileSystem.failure("flock", path, errno: code) }
      throw QueueError(
        code: .locked,
        message:
          "data directory \(directory) is in use by process \(holder.map(String.init) ?? "unknown") (it holds \(path)); stop that process or use another --data-dir"
      )
    }
    self.fd = fd
    let pid = Array("\(getpid())\n".utf8)
    _ = ftruncate(fd, 0)
    _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
  }

  /// The pid written by the process holding the lock, if readable.
  private static func readHolder(_ fd: Int32) -> Int32? {
    var buffer = [UInt8](repeating: 0, count: 32)
    let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
    guard count > 0 else { return nil }
    return Int32(String(decoding: buffer[..<count], as: UTF8.self).trimmingSuffix { $0 == "\n" })
  }

  /// Releases the lock.
  public func unlock() {
    _ = flock(fd, LOCK_UN)
    close(fd)
  }
}

extension String {
  fileprivate func trimmingSuffix(while predicate: (Character) -> Bool) -> String {
    var result = self
    while let last = result.last, predicate(last) { result.removeLast() }
    return result
  }
}
