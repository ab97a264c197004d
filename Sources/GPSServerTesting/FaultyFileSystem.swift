package import GPSModel
package import Queue
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A file system that fails writes or syncs on demand and can forget what was never synced,
/// like a machine that lost power. For tests: the engine itself ships none of this.
package final class FaultyFileSystem: FileSystem {
  struct State {
    var writeError: Int32?
    var syncError: Int32?
    /// Renames left before they fail (nil: never).
    var renamesLeft: Int?
    /// Whole-file writes of paths with this suffix fail (with EIO).
    var failingAtomicSuffix: String?
    /// Bytes known durable per file (size at open, then at each successful sync).
    var synced: [String: UInt64] = [:]
  }

  let base = PosixFileSystem()
  let state = Mutex(State())

  package init() {}

  /// Every later write fails with `errno` (e.g. ENOSPC) until ``heal()``.
  package func failWrites(errno code: Int32) { state.withLock { $0.writeError = code } }
  /// Every later fsync fails with `errno` (e.g. EIO) until ``heal()``.
  package func failSyncs(errno code: Int32) { state.withLock { $0.syncError = code } }
  /// After `count` more successful renames, every rename fails (with EIO) until ``heal()``: a
  /// crash part-way through moving files.
  package func failRenames(after count: Int) { state.withLock { $0.renamesLeft = count } }
  /// Whole-file writes (``writeAtomically(_:contents:)``) of paths ending in `suffix` fail with
  /// EIO until ``heal()``: a crash just before such a file is written.
  package func failAtomicWrites(endingIn suffix: String) { state.withLock { $0.failingAtomicSuffix = suffix } }
  package func heal() {
    state.withLock {
      $0.writeError = nil; $0.syncError = nil; $0.renamesLeft = nil; $0.failingAtomicSuffix = nil
    }
  }

  /// Truncates every file written through this file system to what was last synced.
  package func loseUnsyncedWrites() throws(QueueError) {
    let synced = state.withLock { $0.synced }
    for (path, size) in synced {
      if let current = try base.size(of: path), current > size {
        guard Glibc.truncate(path, off_t(size)) == 0 else { throw PosixFileSystem.failure("truncate", path) }
      }
    }
  }

  func checkWrite(_ path: String) throws(QueueError) {
    if let code = state.withLock({ $0.writeError }) { throw PosixFileSystem.failure("write", path, errno: code) }
  }

  package func openForAppend(_ path: String, create: Bool) throws(QueueError) -> any AppendableFile {
    let file = try base.openForAppend(path, create: create)
    let size = try base.size(of: path) ?? 0
    state.withLock { state in
      if state.synced[path] == nil || create && size == 0 { state.synced[path] = size }
    }
    return FaultyFile(file: file, path: path, fileSystem: self)
  }

  package func read(_ path: String, from offset: UInt64) throws(QueueError) -> [UInt8] {
    try base.read(path, from: offset)
  }
  package func read(_ path: String, from offset: UInt64, maxBytes: Int) throws(QueueError) -> [UInt8] {
    try base.read(path, from: offset, maxBytes: maxBytes)
  }
  package func size(of path: String) throws(QueueError) -> UInt64? { try base.size(of: path) }
  package func list(_ directory: String) throws(QueueError) -> [String] { try base.list(directory) }
  package func createDirectory(_ path: String) throws(QueueError) { try base.createDirectory(path) }
  package func syncDirectory(_ path: String) throws(QueueError) {
    if let code = state.withLock({ $0.syncError }) { throw PosixFileSystem.failure("fsync", path, errno: code) }
    try base.syncDirectory(path)
  }
  package func truncate(_ path: String, to size: UInt64) throws(QueueError) {
    try checkWrite(path)
    try base.truncate(path, to: size)
    state.withLock { $0.synced[path] = size }
  }
  package func rename(_ from: String, to: String) throws(QueueError) {
    let allowed = state.withLock { state -> Bool in
      guard let left = state.renamesLeft else { return true }
      state.renamesLeft = left - 1
      return left > 0
    }
    guard allowed else { throw PosixFileSystem.failure("rename", from, errno: EIO) }
    try base.rename(from, to: to)
  }
  package func remove(_ path: String) throws(QueueError) { try base.remove(path) }
  package func writeAtomically(_ path: String, contents: [UInt8]) throws(QueueError) {
    try checkWrite(path)
    if let suffix = state.withLock({ $0.failingAtomicSuffix }), path.hasSuffix(suffix) {
      throw PosixFileSystem.failure("write", path, errno: EIO)
    }
    try base.writeAtomically(path, contents: contents)
  }

  final class FaultyFile: AppendableFile {
    let file: any AppendableFile
    let path: String
    let fileSystem: FaultyFileSystem

    init(file: any AppendableFile, path: String, fileSystem: FaultyFileSystem) {
      self.file = file
      self.path = path
      self.fileSystem = fileSystem
    }

    func append(_ bytes: UnsafeRawBufferPointer) throws(QueueError) {
      try fileSystem.checkWrite(path)
      try file.append(bytes)
    }

    func sync() throws(QueueError) {
      if let code = fileSystem.state.withLock({ $0.syncError }) {
        throw PosixFileSystem.failure("fdatasync", path, errno: code)
      }
      try file.sync()
      let size = try fileSystem.base.size(of: path) ?? 0
      fileSystem.state.withLock { $0.synced[path] = size }
    }

    func close() { file.close() }
  }
}
