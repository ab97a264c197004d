public import Foundation
import Queue

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
    try Data(contents).write(to: file)
    return file
  }
}

/// Makes `path` hold an empty queue, as `gps server start` leaves it, so that offline commands
/// (which refuse a directory without a queue) accept it.
public func createQueue(at path: String) throws {
  try RunQueue(directory: path).close()
}
