import Foundation
package import GPSModel

/// Where a store's password comes from: a file holding only it (`--store-password-file`), or a
/// libpq password file (`PGPASSFILE`, else `~/.pgpass`: `host:port:database:user:password` lines,
/// `*` for any, `\:` and `\\` escaped). Never the command line.
package enum StorePassword: Sendable, Hashable {
  case none
  /// A file whose first line is the password.
  case file(String)
  /// The libpq password file at this path, looked up per host.
  case passFile(String)

  /// What a server or command uses: `--store-password-file`, else the libpq file if there is one.
  package static func resolve(
    passwordFile: String?, environment: [String: String] = ProcessInfo.processInfo.environment
  )
    -> StorePassword
  {
    if let passwordFile { return .file(passwordFile) }
    if let path = environment["PGPASSFILE"], !path.isEmpty { return .passFile(path) }
    if let home = environment["HOME"], !home.isEmpty, FileManager.default.fileExists(atPath: home + "/.pgpass") {
      return .passFile(home + "/.pgpass")
    }
    return .none
  }

  /// The password for `user` on `host`/`database`, or nil when none is configured (the server may
  /// not ask for one).
  package func password(host: StoreLocation.Host, database: String, user: String) throws(QueueError) -> String? {
    switch self {
    case .none:
      return nil
    case .file(let path):
      let text = try Self.read(path, what: "--store-password-file")
      guard let line = text.split(separator: "\n", omittingEmptySubsequences: false).first,
        !line.trimmingCharacters(in: .whitespaces).isEmpty
      else {
        throw QueueError(code: .invalidArgument, message: "--store-password-file \(path): the file is empty")
      }
      return String(line.hasSuffix("\r") ? line.dropLast() : line)
    case .passFile(let path):
      guard FileManager.default.fileExists(atPath: path) else { return nil }
      var info = stat()
      if stat(path, &info) == 0, info.st_mode & 0o077 != 0 {
        throw QueueError(
          code: .invalidArgument,
          message:
            "the password file \(path) can be read by group or others; make it private with `chmod 600 \(path)` (as libpq requires)"
        )
      }
      let text = try Self.read(path, what: "the password file")
      for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        let fields = Self.fields(of: line)
        guard fields.count == 5 else { continue }
        func matches(_ field: String, _ value: String) -> Bool { field == "*" || field == value }
        if matches(fields[0], host.name), matches(fields[1], String(host.port)), matches(fields[2], database),
          matches(fields[3], user)
        {
          return fields[4]
        }
      }
      return nil
    }
  }

  private static func read(_ path: String, what: String) throws(QueueError) -> String {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw QueueError(code: .invalidArgument, message: "\(what) \(path) cannot be read: it is missing or not readable")
    }
    guard data.count <= 1 << 20, let text = String(data: data, encoding: .utf8) else {
      throw QueueError(code: .invalidArgument, message: "\(what) \(path) is not a text file of at most 1 MiB")
    }
    return text
  }

  /// The colon-separated fields of a password file's line, `\:` and `\\` unescaped.
  static func fields(of line: Substring) -> [String] {
    var fields: [String] = []
    var field = ""
    var escaped = false
    for character in line where character != "\r" {
      if escaped {
        field.append(character)
        escaped = false
      } else if character == "\\" {
        escaped = true
      } else if character == ":", fields.count < 4 {
        fields.append(field)
        field = ""
      } else {
        field.append(character)
      }
    }
    fields.append(field)
    return fields
  }
}
