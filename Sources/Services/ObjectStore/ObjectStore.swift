import Crypto
import NIOPosix
import RPC

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A directory of objects addressed by URL, as service A sees them.
///
/// `s3://BUCKET/KEY` maps to `ROOT/BUCKET/KEY`, `file:///abs/path` must name a file under `ROOT`,
/// and anything without a scheme is a key relative to `ROOT`. A URL that leaves `ROOT` — lexically
/// (`..`) or through a symbolic link — is refused, so the service never reads outside its store.
package struct ObjectStore: Sendable {
  /// The root directory, absolute and with symbolic links resolved.
  package let root: String

  /// Bytes read per `read(2)` while hashing: objects are streamed, never loaded whole.
  static let chunkSize = 256 * 1024

  /// Opens a store rooted at `root` (relative paths are taken from the working directory).
  package init(root: String) throws(ObjectStoreError) {
    guard let resolved = Self.realPath(Self.absolute(root)) else {
      throw ObjectStoreError(
        code: .invalidRoot, url: root,
        message: "object root '\(root)' does not exist")
    }
    var isDirectory = stat()
    guard stat(resolved, &isDirectory) == 0, (isDirectory.st_mode & S_IFMT) == S_IFDIR else {
      throw ObjectStoreError(
        code: .invalidRoot, url: root, message: "object root '\(root)' is not a directory")
    }
    self.root = resolved
  }

  /// Maps a URL to a path under the root, checking only its syntax (no file system access).
  package func lexicalPath(for url: String) throws(ObjectStoreError) -> String {
    let relative: String
    if url.isEmpty {
      throw ObjectStoreError(code: .invalidURL, url: url, message: "empty object URL")
    } else if let nul = url.utf8.firstIndex(of: 0) {
      // The file system would see only the part before it: refuse rather than open another object.
      let offset = url.utf8.distance(from: url.utf8.startIndex, to: nul)
      throw ObjectStoreError(
        code: .invalidURL, url: url, message: "\(quotedInput(url)) holds a NUL byte at offset \(offset)")
    } else if url.hasPrefix("s3://") {
      let rest = url.dropFirst("s3://".count)
      guard let slash = rest.firstIndex(of: "/"), slash != rest.startIndex,
        rest.index(after: slash) != rest.endIndex
      else {
        throw ObjectStoreError(
          code: .invalidURL, url: url, message: "\(quotedInput(url)): expected s3://BUCKET/KEY")
      }
      relative = String(rest)
    } else if url.hasPrefix("file://") {
      let path = String(url.dropFirst("file://".count))
      guard path.hasPrefix("/") else {
        throw ObjectStoreError(
          code: .invalidURL, url: url, message: "\(quotedInput(url)): expected file:///absolute/path")
      }
      guard let inside = Self.relative(Self.normalize(path), to: root) else {
        throw ObjectStoreError(
          code: .outsideRoot, url: url, message: "\(quotedInput(url)) is outside the object root \(root)")
      }
      relative = inside
    } else if let colon = url.firstIndex(of: ":"), url[url.startIndex..<colon].allSatisfy(Self.isSchemeCharacter),
      url[colon...].hasPrefix("://")
    {
      throw ObjectStoreError(
        code: .unsupportedScheme, url: url,
        message:
          "\(quotedInput(url)): unsupported scheme '\(url[url.startIndex..<colon])'; use s3://, file:// or a bare key")
    } else {
      if url.hasPrefix("/") {
        throw ObjectStoreError(
          code: .invalidURL, url: url,
          message:
            "\(quotedInput(url)): a bare key is relative to the object root; use file:///absolute/path for an absolute path"
        )
      }
      relative = url
    }
    let path = Self.normalize(root + "/" + relative)
    guard Self.relative(path, to: root) != nil, path != root else {
      throw ObjectStoreError(
        code: .outsideRoot, url: url, message: "\(quotedInput(url)) escapes the object root \(root)")
    }
    return path
  }

  /// Resolves `url`, then reads the object in chunks and returns its size and SHA-256.
  ///
  /// Objects larger than ``inlineReadLimit`` are read on NIO's thread pool, so long reads never
  /// stall the cooperative executor; a small one is read in place, which costs less than the two
  /// thread switches of the hop.
  package func describe(url: String) async throws -> ObjectDescription {
    let path = try self.lexicalPath(for: url)
    let root = self.root
    var info = stat()
    if stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_size <= Self.inlineReadLimit {
      return try Self.hash(url: url, path: path, root: root)
    }
    return try await NIOThreadPool.singleton.runIfActive {
      try Self.hash(url: url, path: path, root: root)
    }
  }

  /// Objects up to this size (bytes) are read without a hop to the thread pool.
  package static let inlineReadLimit = 64 * 1024

  static func hash(url: String, path: String, root: String) throws(ObjectStoreError) -> ObjectDescription {
    guard let real = realPath(path) else {
      let code: ObjectStoreError.Code =
        switch errno {
        case ENOENT, ENOTDIR: .notFound
        // No object can have such a name: the URL is wrong, and asking again will not help.
        case ENAMETOOLONG: .invalidURL
        default: .unreadable
        }
      let reason =
        switch code {
        case .notFound: "no such object"
        case .invalidURL: "the path is too long for a file name"
        default: String(cString: strerror(errno))
        }
      throw ObjectStoreError(code: code, url: url, message: "\(quotedInput(url)): \(reason)")
    }
    guard relative(real, to: root) != nil else {
      throw ObjectStoreError(
        code: .outsideRoot, url: url,
        message: "\(quotedInput(url)) resolves through a symbolic link to \(real), outside the object root \(root)")
    }
    let fd = open(real, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
      throw ObjectStoreError(
        code: errno == ENOENT ? .notFound : .unreadable, url: url,
        message: "\(quotedInput(url)): \(String(cString: strerror(errno)))")
    }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
      throw ObjectStoreError(code: .notAnObject, url: url, message: "\(quotedInput(url)) is not a regular file")
    }
    var hasher = SHA256()
    var size: UInt64 = 0
    // One byte more than a small object, so reading it whole is seen as complete without a second
    // allocation; objects larger than a chunk are read a chunk at a time.
    var buffer = [UInt8](repeating: 0, count: min(chunkSize, Int(info.st_size) + 1))
    while true {
      let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if count < 0 {
        if errno == EINTR { continue }
        throw ObjectStoreError(
          code: .unreadable, url: url, message: "\(quotedInput(url)): read failed: \(String(cString: strerror(errno)))")
      }
      if count == 0 { break }
      buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[..<count])) }
      size += UInt64(count)
      if buffer.count < chunkSize, count == buffer.count {
        // The object grew since fstat: continue with full chunks.
        buffer = [UInt8](repeating: 0, count: chunkSize)
      }
    }
    return ObjectDescription(url: url, sizeBytes: size, sha256: hasher.finalize().hexString)
  }

  static func isSchemeCharacter(_ c: Character) -> Bool {
    c.isASCII && (c.isLetter || c.isNumber || c == "+" || c == "-" || c == ".")
  }

  static func absolute(_ path: String) -> String {
    if path.hasPrefix("/") { return normalize(path) }
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard getcwd(&buffer, buffer.count) != nil else { return normalize(path) }
    return normalize(
      String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + "/" + path)
  }

  /// Removes `.`, empty components and `..` (never above `/`) without touching the file system.
  static func normalize(_ path: String) -> String {
    var parts: [Substring] = []
    for part in path.split(separator: "/", omittingEmptySubsequences: true) {
      switch part {
      case ".": continue
      case "..": if !parts.isEmpty { parts.removeLast() }
      default: parts.append(part)
      }
    }
    return "/" + parts.joined(separator: "/")
  }

  /// The part of `path` below `root`, or nil when `path` is not `root` or inside it.
  static func relative(_ path: String, to root: String) -> String? {
    if path == root { return "" }
    let prefix = root == "/" ? "/" : root + "/"
    return path.hasPrefix(prefix) ? String(path.dropFirst(prefix.count)) : nil
  }

  static func realPath(_ path: String) -> String? {
    guard let resolved = realpath(path, nil) else { return nil }
    defer { free(resolved) }
    return String(cString: resolved)
  }
}

/// Size and digest of one object.
package struct ObjectDescription: Sendable, Hashable {
  package var url: String
  package var sizeBytes: UInt64
  /// Lowercase hex SHA-256 of the object's bytes.
  package var sha256: String
}
