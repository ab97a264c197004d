import Foundation
package import GPSModel

/// Where the log lives in PostgreSQL: `postgres://USER@HOST:PORT[,HOST2:PORT2]/DB?PARAMS`, as libpq
/// spells it (a subset: the hosts in order, `target_session_attrs`, `sslmode`, `sslrootcert`,
/// `connect_timeout`, `application_name`). A password is never part of it: it comes from a password
/// file (`PGPASSFILE`, `~/.pgpass`, or `--store-password-file`).
package struct StoreLocation: Sendable, Hashable, CustomStringConvertible {
  package struct Host: Sendable, Hashable, CustomStringConvertible {
    package var name: String
    package var port: Int

    package init(name: String, port: Int) {
      self.name = name
      self.port = port
    }

    package var description: String { name.contains(":") ? "[\(name)]:\(port)" : "\(name):\(port)" }
  }

  /// Which server of several a connection settles on.
  package enum SessionAttributes: String, Sendable, Hashable {
    /// The first that answers.
    case any
    /// The first that accepts writes (a primary, not a hot standby).
    case readWrite = "read-write"
    /// As read-write (libpq's `primary`: not in recovery).
    case primary
  }

  /// libpq's `sslmode`.
  package enum SSLMode: String, Sendable, Hashable, CaseIterable {
    case disable, allow, prefer, require
    case verifyCA = "verify-ca"
    case verifyFull = "verify-full"
  }

  package var hosts: [Host]
  package var user: String
  package var database: String
  package var sessionAttributes: SessionAttributes
  package var sslMode: SSLMode
  package var sslRootCertificate: String?
  /// Per host tried.
  package var connectTimeout: Duration
  package var applicationName: String

  package static let defaultPort = 5432
  static let parameters = ["target_session_attrs", "sslmode", "sslrootcert", "connect_timeout", "application_name"]

  /// Whether `text` names a PostgreSQL store (rather than a data directory).
  package static func isPostgres(_ text: String) -> Bool {
    text.hasPrefix("postgres://") || text.hasPrefix("postgresql://")
  }

  /// Parses the URL; one line naming what is wrong otherwise.
  package init(url text: String) throws(QueueError) {
    func bad(_ problem: String) -> QueueError {
      QueueError(
        code: .invalidArgument,
        message:
          "--store \(Self.redacted(text).debugDescription): \(problem); expected postgres://USER@HOST:PORT[,HOST2:PORT2]/DATABASE[?target_session_attrs=read-write&sslmode=…]"
      )
    }
    guard text.utf8.count <= 4096 else { throw bad("the URL is longer than 4096 bytes") }
    var rest: Substring
    if text.hasPrefix("postgres://") {
      rest = text.dropFirst("postgres://".count)
    } else if text.hasPrefix("postgresql://") {
      rest = text.dropFirst("postgresql://".count)
    } else {
      throw bad("it does not begin with postgres://")
    }
    var query: Substring = ""
    if let mark = rest.firstIndex(of: "?") {
      query = rest[rest.index(after: mark)...]
      rest = rest[..<mark]
    }
    var path: Substring = ""
    if let slash = rest.firstIndex(of: "/") {
      path = rest[rest.index(after: slash)...]
      rest = rest[..<slash]
    }
    guard let at = rest.lastIndex(of: "@") else { throw bad("it names no user (USER@HOST)") }
    let userInfo = rest[..<at]
    let hostList = rest[rest.index(after: at)...]
    guard !userInfo.contains(":") else {
      throw bad(
        "it carries a password, which must never be on a command line: put it in ~/.pgpass (or the file PGPASSFILE names) or pass --store-password-file FILE"
      )
    }
    guard let user = String(userInfo).removingPercentEncoding, !user.isEmpty else {
      throw bad("the user name is empty or badly percent-encoded")
    }
    var hosts: [Host] = []
    for item in hostList.split(separator: ",", omittingEmptySubsequences: false) {
      hosts.append(try Self.host(item, bad: bad))
    }
    guard !hosts.isEmpty else { throw bad("it names no host") }
    guard let database = String(path).removingPercentEncoding, !database.isEmpty, !database.contains("/") else {
      throw bad("it names no database (…/DATABASE)")
    }
    self.hosts = hosts
    self.user = user
    self.database = database
    sessionAttributes = .any
    sslMode = .prefer
    connectTimeout = .seconds(5)
    applicationName = "gps"
    for pair in query.split(separator: "&") where !pair.isEmpty {
      let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
      let key = String(parts[0])
      let value = parts.count > 1 ? (String(parts[1]).removingPercentEncoding ?? "") : ""
      switch key {
      case "target_session_attrs":
        guard let attributes = SessionAttributes(rawValue: value) else {
          throw bad("target_session_attrs=\(value.prefix(40)) is not one of any, read-write, primary")
        }
        sessionAttributes = attributes
      case "sslmode":
        guard let mode = SSLMode(rawValue: value) else {
          throw bad(
            "sslmode=\(value.prefix(40)) is not one of \(SSLMode.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        sslMode = mode
      case "sslrootcert":
        guard !value.isEmpty else { throw bad("sslrootcert is empty") }
        sslRootCertificate = value
      case "connect_timeout":
        guard let seconds = Int(value), (1...3600).contains(seconds) else {
          throw bad("connect_timeout=\(value.prefix(40)) is not a number of seconds from 1 to 3600")
        }
        connectTimeout = .seconds(seconds)
      case "application_name":
        guard value.utf8.count <= 63, value.allSatisfy({ $0.isASCII && !$0.isNewline }) else {
          throw bad("application_name must be at most 63 printable ASCII characters")
        }
        applicationName = value
      default:
        throw bad(
          "unknown parameter \(key.prefix(40).debugDescription) (known: \(Self.parameters.joined(separator: ", ")))")
      }
    }
    if (sslMode == .verifyCA || sslMode == .verifyFull), sslRootCertificate == nil {
      throw bad("sslmode=\(sslMode.rawValue) needs sslrootcert=FILE (the certificate authority to trust)")
    }
  }

  private static func host(_ item: Substring, bad: (String) -> QueueError) throws(QueueError) -> Host {
    var name: Substring
    var port: Substring?
    if item.hasPrefix("[") {
      guard let close = item.firstIndex(of: "]") else { throw bad("an IPv6 host lacks its closing ]") }
      name = item[item.index(after: item.startIndex)..<close]
      let after = item[item.index(after: close)...]
      if after.hasPrefix(":") { port = after.dropFirst() } else if !after.isEmpty { throw bad("junk after ]") }
    } else if let colon = item.lastIndex(of: ":") {
      name = item[..<colon]
      port = item[item.index(after: colon)...]
    } else {
      name = item
    }
    guard !name.isEmpty else { throw bad("a host is empty") }
    guard name.allSatisfy({ $0.isLetter || $0.isNumber || "-._:%".contains($0) }) else {
      throw bad("host \(String(name.prefix(64)).debugDescription) has characters a host name cannot have")
    }
    var number = defaultPort
    if let port {
      guard let value = Int(port), (1...65535).contains(value) else {
        throw bad("port \(String(port.prefix(20)).debugDescription) of host \(name) is not from 1 to 65535")
      }
      number = value
    }
    return Host(name: String(name), port: number)
  }

  /// The URL without anything secret (it never holds a password; query values are kept).
  package var description: String {
    "postgres://\(user)@\(hosts.map(\.description).joined(separator: ","))/\(database)"
  }

  /// A URL given by a user, with whatever follows `scheme://` up to an `@` hidden (a password
  /// typed there by mistake must not be echoed).
  static func redacted(_ text: String) -> String {
    let bounded = String(text.prefix(200))
    guard let scheme = bounded.range(of: "://"), let at = bounded[scheme.upperBound...].lastIndex(of: "@") else {
      return bounded
    }
    let user = bounded[scheme.upperBound..<at]
    guard let colon = user.firstIndex(of: ":") else { return bounded }
    return String(bounded[..<colon]) + ":***" + String(bounded[at...])
  }
}
