package import GPSModel

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Who takes a data directory's lock, and how long it waits for a short-lived holder.
public struct LockOptions: Sendable {
  /// What the holder is: a long-running server, or a command that holds the lock for a moment
  /// (an offline enqueue, cancel or repair).
  public enum Role: String, Sendable {
    case server, command
  }

  public var role = Role.command
  /// How long to wait while a *command* holds the lock; a server holding it is refused at once.
  public var wait: Duration = .seconds(10)
  /// After this long waiting, `onWaiting` is called once (to say why nothing happens).
  public var reportAfter: Duration = .seconds(1)
  /// Told the holder's pid (when known) when the wait grows long.
  public var onWaiting: (@Sendable (_ holder: Int32?) -> Void)?

  public init(role: Role = .command) {
    self.role = role
  }
}

/// An exclusive `flock` on `DIR/LOCK`: one writer per data directory. The file holds the owner's
/// pid and role (`server` or `command`) so a second writer can say who has it, and wait for a
/// command that holds it only briefly. The kernel drops the lock when the process dies.
package final class DirectoryLock: Sendable {
  package let path: String
  private let fd: Int32

  /// Takes the lock. While a command holds it, waits up to `options.wait`; fails at once when a
  /// server holds it, naming the directory and the process.
  package init(directory: String, options: LockOptions = LockOptions()) throws(QueueError) {
    path = directory + "/LOCK"
    let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw PosixFileSystem.failure("open", path) }
    let clock = ContinuousClock()
    let start = clock.now
    var reported = false
    var pause = Duration.milliseconds(1)
    while flock(fd, LOCK_EX | LOCK_NB) != 0 {
      let code = errno
      guard code == EWOULDBLOCK || code == EINTR else {
        close(fd)
        throw PosixFileSystem.failure("flock", path, errno: code)
      }
      let holder = Self.readHolder(fd)
      let waited = clock.now - start
      // The holder writes its pid and role just after it takes the lock: an empty file is a
      // holder that is starting, worth a wait.
      if holder?.role == .server || waited >= options.wait {
        close(fd)
        let who = holder.map { "\($0.role == .server ? "server " : "")process \($0.pid)" } ?? "another process"
        throw QueueError(
          code: .locked,
          message:
            "data directory \(directory) is in use by \(who) (it holds \(path))"
            + (holder?.role == .server ? "" : "; waited \(Self.seconds(waited))"))
      }
      if !reported, waited >= options.reportAfter {
        reported = true
        options.onWaiting?(holder?.pid)
      }
      var request = timespec(tv_sec: 0, tv_nsec: Int(pause.components.attoseconds / 1_000_000_000))
      nanosleep(&request, nil)
      pause = min(pause * 2, .milliseconds(20))
    }
    self.fd = fd
    let text = Array("\(getpid()) \(options.role.rawValue)\n".utf8)
    _ = ftruncate(fd, 0)
    _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
  }

  private static func seconds(_ duration: Duration) -> String {
    let milliseconds = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    return "\(milliseconds / 1000).\((milliseconds % 1000) / 100) s"
  }

  /// The pid and role written by the process holding the lock, if readable.
  private static func readHolder(_ fd: Int32) -> (pid: Int32, role: LockOptions.Role)? {
    var buffer = [UInt8](repeating: 0, count: 64)
    let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
    guard count > 0 else { return nil }
    let words = String(decoding: buffer[..<count], as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" })
    guard let first = words.first, let pid = Int32(first) else { return nil }
    // A pid alone was written by an older GPS, which only ever held the lock as a server or briefly.
    let role = words.count > 1 ? LockOptions.Role(rawValue: String(words[1])) ?? .command : .command
    return (pid, role)
  }

  /// Releases the lock.
  package func unlock() {
    _ = flock(fd, LOCK_UN)
    close(fd)
  }
}
