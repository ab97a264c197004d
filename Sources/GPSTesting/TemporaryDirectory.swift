public import Foundation

/// A fresh directory under the system's temp directory, removed when the closure returns.
public func withTemporaryDirectory<Result>(
  _ body: (URL) async throws -> Result
) async rethrows -> Result {
  let url = FileManager.default.temporaryDirectory
    .appendingPathComponent("gps-test-\(UUID().uuidString.lowercased())", isDirectory: true)
  try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(at: url) }
  return try await body(url.resolvingSymlinksInPath())
}

extension URL {
  /// Writes `contents` to `relativePath` under this directory, creating parent directories.
  @discardableResult
  public func writeFile(_ relativePath: String, _ contents: some DataProtocol) throws -> URL {
    let file = appendingPathComponent(relativePath)
    try FileManager.default.createDirectory(
      at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
    try Data(contents).writeInPlace(to: file)
    return file
  }
}

extension DataProtocol {
  /// Writes the bytes to `url` in place (created or truncated). Foundation's `Data.write(to:)`
  /// on Linux leaves a `/tmp/TemporaryDirectory.*` folder behind for every call.
  public func writeInPlace(to url: URL) throws {
    let fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url.path]) }
    defer { close(fd) }
    let bytes = Array(self)
    var done = 0
    while done < bytes.count {
      let count = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
      if count < 0, errno == EINTR { continue }
      guard count > 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url.path]) }
      done += count
    }
  }
}
