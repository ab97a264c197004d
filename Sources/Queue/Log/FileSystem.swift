package import GPSModel

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The file operations the log and the snapshot store use, so tests can inject failures
/// (see ``FaultyFileSystem``).
package protocol FileSystem: Sendable {
  /// Opens `path` for appending, creating it when `create` is true.
  func openForAppend(_ path: String, create: Bool) throws(QueueError) -> any AppendableFile
  /// The bytes of `path` from `offset` to its end.
  func read(_ path: String, from offset: UInt64) throws(QueueError) -> [UInt8]
  /// At most `maxBytes` bytes of `path` from `offset` on (fewer only at its end).
  func read(_ path: String, from offset: UInt64, maxBytes: Int) throws(QueueError) -> [UInt8]
  /// The size of `path`, or nil when it does not exist.
  func size(of path: String) throws(QueueError) -> UInt64?
  /// Names of the entries of a directory.
  func list(_ directory: String) throws(QueueError) -> [String]
  func createDirectory(_ path: String) throws(QueueError)
  /// fsync on the directory itself, so created, renamed and removed entries are durable.
  func syncDirectory(_ path: String) throws(QueueError)
  /// Truncates `path` to `size` bytes and syncs it.
  func truncate(_ path: String, to size: UInt64) throws(QueueError)
  func rename(_ from: String, to: String) throws(QueueError)
  func remove(_ path: String) throws(QueueError)
  /// Writes a whole file: temp file, fsync, rename over `path`, fsync the directory.
  func writeAtomically(_ path: String, contents: [UInt8]) throws(QueueError)
}

/// A file open for appending.
package protocol AppendableFile: AnyObject, Sendable {
  /// Appends all of `bytes` (retrying short writes).
  func append(_ bytes: UnsafeRawBufferPointer) throws(QueueError)
  /// `fdatasync`: the appended bytes are durable when it returns.
  func sync() throws(QueueError)
  func close()
}

extension AppendableFile {
  func append(_ bytes: [UInt8]) throws(QueueError) {
    let result: Result<Void, QueueError> = bytes.withUnsafeBytes { buffer in
      Result { () throws(QueueError) in try append(buffer) }
    }
    try result.get()
  }
}

/// The real file system, through POSIX calls.
package struct PosixFileSystem: FileSystem {
  package init() {}

  package static func failure(_ call: String, _ path: String, errno code: Int32 = errno) -> QueueError {
    QueueError(
      code: .io, message: "\(call) \(path) failed: \(String(cString: strerror(code))) (errno \(code))",
      cause: Errno(code: code))
  }

  package func openForAppend(_ path: String, create: Bool) throws(QueueError) -> any AppendableFile {
    let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | (create ? O_CREAT : 0), 0o644)
    guard fd >= 0 else { throw Self.failure("open", path) }
    return PosixFile(fd: fd, path: path)
  }

  package func read(_ path: String, from offset: UInt64) throws(QueueError) -> [UInt8] {
    try read(path, from: offset, maxBytes: .max)
  }

  package func read(_ path: String, from offset: UInt64, maxBytes: Int) throws(QueueError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw Self.failure("open", path) }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw Self.failure("fstat", path) }
    let size = UInt64(info.st_size)
    guard size > offset else { return [] }
    // Uninitialized: the bytes are read straight in, not zeroed first (snapshots are hundreds of MB).
    var failure: QueueError?
    let bytes = [UInt8](unsafeUninitializedCapacity: Int(min(size - offset, UInt64(maxBytes)))) {
      buffer, initialized in
      var done = 0
      while done < buffer.count {
        let count = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
        if count < 0, errno == EINTR { continue }
        guard count >= 0 else {
          failure = Self.failure("read", path)
          break
        }
        if count == 0 { break }  // the file shrank meanwhile
        done += count
      }
      initialized = done
    }
    if let failure { throw failure }
    return bytes
  }

  package func size(of path: String) throws(QueueError) -> UInt64? {
    var info = stat()
    if stat(path, &info) != 0 {
      if errno == ENOENT { return nil }
      throw Self.failure("stat", path)
    }
    return UInt64(info.st_size)
  }

  package func list(_ directory: String) throws(QueueError) -> [String] {
    guard let handle = opendir(directory) else { throw Self.failure("opendir", directory) }
    defer { closedir(handle) }
    var names: [String] = []
    while let entry = readdir(handle) {
      let name = withUnsafePointer(to: entry.pointee.d_name) {
        $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
      }
      if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
  }

  package func createDirectory(_ path: String) throws(QueueError) {
    if mkdir(path, 0o755) != 0 && errno != EEXIST { throw Self.failure("mkdir", path) }
  }

  package func syncDirectory(_ path: String) throws(QueueError) {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { throw Self.failure("open", path) }
    defer { close(fd) }
    guard fsync(fd) == 0 else { throw Self.failure("fsync", path) }
  }

  package func truncate(_ path: String, to size: UInt64) throws(QueueError) {
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { throw Self.failure("open", path) }
    defer { close(fd) }
    guard ftruncate(fd, off_t(size)) == 0 else { throw Self.failure("ftruncate", path) }
    guard fsync(fd) == 0 else { throw Self.failure("fsync", path) }
  }

  package func rename(_ from: String, to: String) throws(QueueError) {
    guard Glibc.rename(from, to) == 0 else { throw Self.failure("rename", "\(from) to \(to)") }
  }

  package func remove(_ path: String) throws(QueueError) {
    guard unlink(path) == 0 || errno == ENOENT else { throw Self.failure("unlink", path) }
  }

  package func writeAtomically(_ path: String, contents: [UInt8]) throws(QueueError) {
    let temporary = path + ".tmp"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw Self.failure("open", temporary) }
    let file = PosixFile(fd: fd, path: temporary)
    var renamed = false
    defer {
      file.close()
      // A failed write (a full disk) leaves no half-written temp file behind.
      if !renamed { unlink(temporary) }
    }
    try file.append(contents)
    guard fsync(fd) == 0 else { throw Self.failure("fsync", temporary) }
    try rename(temporary, to: path)
    renamed = true
    try syncDirectory(directoryName(path))
  }
}

/// The directory part of a path (`.` when there is none).
func directoryName(_ path: String) -> String {
  guard let slash = path.lastIndex(of: "/") else { return "." }
  return slash == path.startIndex ? "/" : String(path[..<slash])
}

final class PosixFile: AppendableFile {
  let fd: Int32
  let path: String

  init(fd: Int32, path: String) {
    self.fd = fd
    self.path = path
  }

  func append(_ bytes: UnsafeRawBufferPointer) throws(QueueError) {
    var done = 0
    while done < bytes.count {
      let count = write(fd, bytes.baseAddress! + done, bytes.count - done)
      if count < 0, errno == EINTR { continue }
      guard count > 0 else { throw PosixFileSystem.failure("write", path) }
      done += count
    }
  }

  func sync() throws(QueueError) {
    guard fdatasync(fd) == 0 else { throw PosixFileSystem.failure("fdatasync", path) }
  }

  func close() {
    _ = Glibc.close(fd)
  }
}

/// An `errno` value as an error cause.
package struct Errno: Error, Sendable, Hashable {
  package var code: Int32
}
