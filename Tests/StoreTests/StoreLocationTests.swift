import Foundation
import GPSModel
import GPSTestSupport
import PostgresStore
import Testing

@Suite struct StoreLocationTests {
  @Test func aURLWithSeveralHostsAndLibpqParameters() throws {
    let location = try StoreLocation(
      url:
        "postgres://gps@db1.example.com:5433,[::1]:6000,db3/gps_prod?target_session_attrs=read-write&sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=3"
    )
    #expect(
      location.hosts == [
        .init(name: "db1.example.com", port: 5433), .init(name: "::1", port: 6000), .init(name: "db3", port: 5432),
      ])
    #expect(location.user == "gps")
    #expect(location.database == "gps_prod")
    #expect(location.sessionAttributes == .readWrite)
    #expect(location.sslMode == .verifyFull)
    #expect(location.sslRootCertificate == "/etc/ca.pem")
    #expect(location.connectTimeout == .seconds(3))
    #expect(location.description == "postgres://gps@db1.example.com:5433,[::1]:6000,db3:5432/gps_prod")
    let plain = try StoreLocation(url: "postgresql://me@localhost/db")
    #expect(
      plain.sslMode == .prefer && plain.sessionAttributes == .any
        && plain.hosts == [.init(name: "localhost", port: 5432)])
  }

  /// A password never belongs on a command line: refused, and not echoed.
  @Test func aPasswordInTheURLIsRefusedWithoutEchoingIt() {
    #expect {
      try StoreLocation(url: "postgres://gps:s3cret@db:5432/gps")
    } throws: { error in
      let message = (error as? QueueError)?.message ?? ""
      return message.contains("pgpass") && message.contains("--store-password-file") && !message.contains("s3cret")
    }
  }

  @Test(arguments: [
    ("mysql://gps@db/gps", "does not begin with postgres://"),
    ("postgres://db:5432/gps", "names no user"),
    ("postgres://gps@db:5432", "names no database"),
    ("postgres://gps@db:99999/gps", "port \"99999\""),
    ("postgres://gps@db,/gps", "a host is empty"),
    ("postgres://gps@db/gps?sslmode=sometimes", "sslmode=sometimes is not one of"),
    ("postgres://gps@db/gps?target_session_attrs=standby", "target_session_attrs=standby"),
    ("postgres://gps@db/gps?pool=5", "unknown parameter \"pool\""),
    ("postgres://gps@db/gps?sslmode=verify-ca", "needs sslrootcert"),
    ("postgres://gps@d<b>/gps", "characters a host name cannot have"),
  ])
  func badURLsAreRefusedWithOneLine(url: String, problem: String) {
    #expect {
      try StoreLocation(url: url)
    } throws: { error in
      let message = (error as? QueueError)?.message ?? ""
      return message.contains(problem) && !message.contains("\n") && message.contains("expected postgres://")
    }
  }

  /// libpq's password file: the first matching line, `*` for any, `\:` escaped; a file others can
  /// read is refused, as libpq refuses it.
  @Test func thePasswordFileIsLookedUpAsLibpqDoes() async throws {
    try await withTemporaryDirectory { directory in
      let file = try directory.writeFile(
        "pgpass",
        """
        # comment
        db1:5432:gps:gps:first
        *:5433:*:gps:any\\:db
        db2:*:gps:other:nope

        """.data(using: .utf8)!)
      chmod(file.path, 0o600)
      let password = StorePassword.passFile(file.path)
      #expect(try password.password(host: .init(name: "db1", port: 5432), database: "gps", user: "gps") == "first")
      #expect(try password.password(host: .init(name: "db9", port: 5433), database: "x", user: "gps") == "any:db")
      #expect(try password.password(host: .init(name: "db2", port: 5432), database: "gps", user: "gps") == nil)
      chmod(file.path, 0o644)
      #expect {
        try password.password(host: .init(name: "db1", port: 5432), database: "gps", user: "gps")
      } throws: { error in
        ((error as? QueueError)?.message ?? "").contains("chmod 600")
      }
      let single = try directory.writeFile("password", "only-this\nignored\n".data(using: .utf8)!)
      #expect(
        try StorePassword.file(single.path).password(host: .init(name: "h", port: 1), database: "d", user: "u")
          == "only-this")
      #expect(StorePassword.resolve(passwordFile: nil, environment: ["PGPASSFILE": file.path]) == .passFile(file.path))
      #expect(
        StorePassword.resolve(passwordFile: single.path, environment: ["PGPASSFILE": file.path]) == .file(single.path))
    }
  }
}
