/// Why an object URL could not be resolved or read.
package struct ObjectStoreError: Error, Sendable, CustomStringConvertible {
  package enum Code: Sendable, Hashable {
    /// The object root does not exist or is not a directory.
    case invalidRoot
    /// The URL is malformed (empty, `s3://` without a key, relative `file://` …).
    case invalidURL
    /// The URL has a scheme other than `s3://` and `file://`.
    case unsupportedScheme
    /// The URL leaves the object root, lexically or through a symbolic link.
    case outsideRoot
    /// No object at that URL.
    case notFound
    /// The URL names a directory or another non-regular file.
    case notAnObject
    /// The object exists but could not be read.
    case unreadable
  }

  package var code: Code
  /// The URL as requested.
  package var url: String
  /// One line that names the URL and says what is wrong.
  package var message: String

  package var description: String { message }
}
