package import Foundation
import GPSTesting
import Synchronization

/// A PostgreSQL server of its own for a test: Debian's `postgresql` binaries (`initdb`, `pg_ctl`),
/// a cluster in a temporary directory, listening on 127.0.0.1 on a free port, with password
/// (SCRAM) authentication for TCP. Stopped by its pid and removed by ``stop()``. As root (CI), the
/// server runs as the `postgres` user, which PostgreSQL requires.
package final class PostgresServer: Sendable {
  package let directory: String
  package let port: Int
  package let user = "gps"
  package let password: String
  /// A file holding only the password (for `--store-password-file`).
  package let passwordFile: String
  package let binaries: String

  private init(directory: String, port: Int, password: String, passwordFile: String, binaries: String) {
    self.directory = directory
    self.port = port
    self.password = password
    self.passwordFile = passwordFile
    self.binaries = binaries
  }

  package var dataDirectory: String { directory + "/data" }

  /// The server's pid, from its `postmaster.pid` (nil when it is not running).
  package var pid: pid_t? {
    guard let text = try? String(contentsOfFile: dataDirectory + "/postmaster.pid", encoding: .utf8),
      let line = text.split(separator: "\n").first, let pid = pid_t(line)
    else { return nil }
    return pid
  }

  /// `postgres://gps@127.0.0.1:PORT/DATABASE` followed by `query` (e.g. `?target_session_attrs=read-write`).
  package func url(database: String = "gps", query: String = "") -> String {
    "postgres://\(user)@127.0.0.1:\(port)/\(database)\(query)"
  }

  /// Initializes and starts a cluster with a database `gps`; `settings` go to the server's command
  /// line (`-c NAME=VALUE`).
  package static func start(settings: [String: String] = [:]) throws -> PostgresServer {
    let binaries = try findBinaries()
    let directory = FileManager.default.temporaryDirectory
      .appendingPathComponent("gps-pg-\(UUID().uuidString.prefix(8).lowercased())").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let password = "pw-\(UUID().uuidString.prefix(12))"
    let passwordFile = directory + "/password"
    try Data("\(password)\n".utf8).writeInPlace(to: URL(fileURLWithPath: passwordFile))
    chmod(passwordFile, 0o644)
    try handOver(directory)
    do {
      try run(
        binaries + "/initdb",
        [
          "-D", directory + "/data", "-U", "gps", "--auth-local=trust", "--auth-host=scram-sha-256",
          "--pwfile=\(passwordFile)", "-N", "-E", "UTF8", "--locale=C",
        ])
      chmod(passwordFile, 0o600)
      return try onAFreePort(
        directory: directory, password: password, passwordFile: passwordFile, binaries: binaries, settings: settings
      ) { server in try server.psql("CREATE DATABASE gps", database: "postgres") }
    } catch {
      try? FileManager.default.removeItem(atPath: directory)
      throw error
    }
  }

  /// A server that also speaks TLS (`ssl = on`) with a certificate for 127.0.0.1 signed by a
  /// certificate authority of its own, made here with `openssl`; returns that authority's
  /// certificate and the certificate of another authority (which signed nothing it serves).
  package static func startWithTLS() throws -> (server: PostgresServer, authority: String, otherAuthority: String) {
    let certificates = FileManager.default.temporaryDirectory
      .appendingPathComponent("gps-pg-tls-\(UUID().uuidString.prefix(8).lowercased())").path
    try FileManager.default.createDirectory(atPath: certificates, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: certificates) }
    func openssl(_ arguments: [String]) throws { try run("/usr/bin/openssl", arguments, asServerUser: false) }
    let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for name in ["ca", "other-ca"] {
      try openssl(
        ["req", "-x509"] + key + [
          "-days", "2", "-subj", "/CN=gps-test-\(name)", "-keyout", "\(certificates)/\(name).key", "-out",
          "\(certificates)/\(name).pem",
        ])
    }
    try openssl(
      ["req"] + key + [
        "-subj", "/CN=127.0.0.1", "-keyout", "\(certificates)/server.key", "-out", "\(certificates)/server.csr",
      ])
    try Data("subjectAltName=IP:127.0.0.1\n".utf8).writeInPlace(
      to: URL(fileURLWithPath: certificates + "/server.ext"))
    try openssl([
      "x509", "-req", "-in", "\(certificates)/server.csr", "-CA", "\(certificates)/ca.pem", "-CAkey",
      "\(certificates)/ca.key", "-CAcreateserial", "-days", "2", "-extfile", "\(certificates)/server.ext", "-out",
      "\(certificates)/server.pem",
    ])
    let server = try start()
    // Beside the cluster, owned by the user it runs as, the key readable by it alone.
    for name in ["server.pem", "server.key", "ca.pem", "other-ca.pem"] {
      try FileManager.default.copyItem(atPath: "\(certificates)/\(name)", toPath: "\(server.directory)/\(name)")
    }
    chmod("\(server.directory)/server.key", 0o600)
    try handOver(server.directory)
    server.stop(removing: false)
    try server.restart(settings: [
      "ssl": "on", "ssl_cert_file": "\(server.directory)/server.pem", "ssl_key_file": "\(server.directory)/server.key",
    ])
    return (server, "\(server.directory)/ca.pem", "\(server.directory)/other-ca.pem")
  }

  /// Starts the cluster in `directory` on a free port (another may take the port between finding
  /// and binding it: five tries), then runs `ready` on it.
  private static func onAFreePort(
    directory: String, password: String, passwordFile: String, binaries: String, settings: [String: String],
    ready: (PostgresServer) throws -> Void
  ) throws -> PostgresServer {
    var lastError: (any Error)?
    for _ in 0..<5 {
      let server = PostgresServer(
        directory: directory, port: try freePort(), password: password, passwordFile: passwordFile, binaries: binaries)
      do {
        try server.startServer(settings: settings)
        try ready(server)
        try server.stopWhenThisProcessIsGone()
        return server
      } catch {
        lastError = error
      }
    }
    throw lastError!
  }

  private func startServer(settings: [String: String]) throws {
    var options = "-p \(port) -k \(directory) -c listen_addresses=127.0.0.1"
    for (name, value) in settings.sorted(by: { $0.key < $1.key }) { options += " -c \(name)=\(value)" }
    do {
      try Self.run(
        binaries + "/pg_ctl",
        ["-D", dataDirectory, "-l", directory + "/server.log", "-w", "-t", "60", "-o", options, "start"])
    } catch {
      // Why the server stopped is in its log, not in pg_ctl's answer.
      let log = (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? ""
      let tail = log.split(separator: "\n").suffix(4).joined(separator: " | ")
      throw PostgresServerError("\(error); the server's log ends: \(tail)")
    }
  }

  /// A test process that dies by a signal runs no exit handler: a watchdog stops the server (by
  /// the pid in its `postmaster.pid`) and removes its directory once this process is gone. It runs
  /// in a session of its own with every inherited descriptor closed (holding none of this
  /// process's pipes or sockets open), and polls once a second; a server stopped and removed before
  /// then leaves it nothing to do.
  private func stopWhenThisProcessIsGone() throws {
    let quoted = "'" + directory.replacingOccurrences(of: "'", with: "'\\''") + "'"
    let watchdog = """
      \(Self.closingInheritedDescriptors)
      while kill -0 \(getpid()) 2>/dev/null; do sleep 1; done
      if [ -f \(quoted)/data/postmaster.pid ]; then kill -INT "$(head -1 \(quoted)/data/postmaster.pid)"; fi
      n=0; while [ -f \(quoted)/data/postmaster.pid ] && [ $n -lt 100 ]; do sleep 0.2; n=$((n+1)); done
      rm -rf \(quoted)
      """
    let escaped = "'" + watchdog.replacingOccurrences(of: "'", with: "'\\''") + "'"
    try Self.run(
      "/bin/sh", ["-c", "/usr/bin/setsid /bin/bash -c \(escaped) </dev/null >/dev/null 2>&1 &"], asServerUser: false)
  }

  /// Starts the server again after ``kill()`` or ``stop(removing:)`` with `removing: false`.
  package func restart(settings: [String: String] = [:]) throws {
    try startServer(settings: settings)
  }

  /// A streaming replica of this server (`pg_basebackup -R`), started on a free port. With
  /// `synchronous`, this server then waits for it at every commit (`synchronous_standby_names`),
  /// so what a client saw committed survives this server's loss.
  package func startReplica(synchronous: Bool = true) throws -> PostgresServer {
    let directory = FileManager.default.temporaryDirectory
      .appendingPathComponent("gps-pg-\(UUID().uuidString.prefix(8).lowercased())").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let copy = directory + "/password"
    try Data("\(password)\n".utf8).writeInPlace(to: URL(fileURLWithPath: copy))
    try Self.handOver(directory)
    chmod(copy, 0o600)
    do {
      try Self.run(
        binaries + "/pg_basebackup",
        [
          "-h", "127.0.0.1", "-p", "\(port)", "-U", user, "-D", directory + "/data", "-R", "-X", "stream", "-c", "fast",
        ],
        environment: ["PGPASSWORD": password])
      let replica = try Self.onAFreePort(
        directory: directory, password: password, passwordFile: copy, binaries: binaries, settings: [:]
      ) { _ in }
      if synchronous {
        try psql("ALTER SYSTEM SET synchronous_standby_names = '*'", database: "postgres")
        try psql("SELECT pg_reload_conf()", database: "postgres")
      }
      return replica
    } catch {
      try? FileManager.default.removeItem(atPath: directory)
      throw error
    }
  }

  /// Promotes a replica to a primary (`pg_ctl promote`, waiting until it accepts writes).
  package func promote() throws {
    try Self.run(binaries + "/pg_ctl", ["-D", dataDirectory, "-w", "-t", "60", "promote"])
  }

  /// Runs SQL through `psql` on the local socket; returns its unaligned output.
  @discardableResult
  package func psql(_ sql: String, database: String = "gps") throws -> String {
    try Self.run(
      binaries + "/psql",
      ["-h", directory, "-p", "\(port)", "-U", user, "-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
      asServerUser: false, environment: ["PGPASSWORD": password])
  }

  /// Stops the server (fast shutdown: SIGINT to its pid), waits until the pid is gone and, with
  /// `removing`, deletes its directory.
  package func stop(removing: Bool = true) {
    if let pid {
      Foundation.kill(pid, SIGINT)
      waitUntilGone(pid)
    }
    if removing { try? FileManager.default.removeItem(atPath: directory) }
  }

  /// Kills the server at once (SIGKILL to the postmaster and its children: no shutdown checkpoint),
  /// as a crash of the machine would leave it.
  package func kill() {
    guard let pid else { return }
    Foundation.kill(-pid, SIGKILL)
    Foundation.kill(pid, SIGKILL)
    waitUntilGone(pid)
    try? FileManager.default.removeItem(atPath: dataDirectory + "/postmaster.pid")
  }

  /// Pauses (SIGSTOP) or resumes (SIGCONT) the postmaster and its backends.
  package func signalAll(_ signal: Int32) {
    guard let pid else { return }
    _ = try? Self.run("/usr/bin/pkill", ["-\(signal)", "-P", "\(pid)"], asServerUser: false)
    Foundation.kill(pid, signal)
  }

  private func waitUntilGone(_ pid: pid_t) {
    let deadline = Date().addingTimeInterval(60)
    while Foundation.kill(pid, 0) == 0 || errno != ESRCH {
      if Date() > deadline { break }
      usleep(20_000)
    }
  }

  // MARK: Processes

  static func findBinaries() throws -> String {
    let root = "/usr/lib/postgresql"
    let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [])
      .compactMap(Int.init).sorted()
    for version in versions.reversed()
    where FileManager.default.isExecutableFile(atPath: "\(root)/\(version)/bin/initdb") {
      return "\(root)/\(version)/bin"
    }
    throw PostgresServerError(
      "PostgreSQL's initdb is not installed under \(root)/VERSION/bin: install Debian's postgresql (`make test` does)")
  }

  /// The `postgres` user's uid and gid when this process runs as root (PostgreSQL refuses root).
  static var serverUser: (uid: uid_t, gid: gid_t)? {
    guard geteuid() == 0, let entry = getpwnam("postgres") else { return nil }
    return (entry.pointee.pw_uid, entry.pointee.pw_gid)
  }

  /// Makes `directory` the server user's, when that is not this process's user.
  static func handOver(_ directory: String) throws {
    guard let user = serverUser else { return }
    guard chown(directory, user.uid, user.gid) == 0 else {
      throw PostgresServerError("cannot hand \(directory) to the postgres user: errno \(errno)")
    }
    for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
      chown(directory + "/" + name, user.uid, user.gid)
    }
  }

  /// Runs a program to its end (posix_spawn and waitpid: Foundation's Process can miss the exit
  /// of a program that leaves a daemon behind, as `pg_ctl start` does); its output goes to a file,
  /// not a pipe the daemon would hold open. Returns the output; throws it when the exit is not 0.
  @discardableResult
  package static func run(
    _ executable: String, _ arguments: [String], asServerUser: Bool = true, environment: [String: String] = [:]
  ) throws -> String {
    // Through bash, which closes every descriptor above 2 before it runs the program: a server
    // started here would otherwise inherit this process's sockets and pipes (under a parallel
    // test run, so many that PostgreSQL refused to start: "insufficient file descriptors").
    let argv =
      (asServerUser && serverUser != nil ? ["/usr/sbin/runuser", "-u", "postgres", "--"] : [])
      + ["/bin/bash", "-c", Self.closingInheritedDescriptors + "exec \"$0\" \"$@\"", executable] + arguments
    var processEnvironment = ProcessInfo.processInfo.environment
    for (name, value) in environment { processEnvironment[name] = value }
    let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("gps-pg-\(UUID().uuidString).out")
      .path
    defer { unlink(outputPath) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    // A clean signal state: this process's threads block signals (the Swift runtime's), and a
    // child that inherited that mask would never see its own timers (pgbench -T waits forever).
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var empty = sigset_t()
    sigemptyset(&empty)
    posix_spawnattr_setsigmask(&attributes, &empty)
    var all = sigset_t()
    sigfillset(&all)
    posix_spawnattr_setsigdefault(&attributes, &all)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    let cArguments = argv.map { strdup($0) } + [nil]
    let cEnvironment = processEnvironment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
      for pointer in cArguments { free(pointer) }
      for pointer in cEnvironment { free(pointer) }
    }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, argv[0], &actions, &attributes, cArguments, cEnvironment)
    guard spawned == 0 else { throw PostgresServerError("cannot start \(argv[0]): errno \(spawned)") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
      guard errno == EINTR else { throw PostgresServerError("waitpid \(argv[0]): errno \(errno)") }
    }
    let text = ((try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "")
      .trimmingCharacters(in: .whitespacesAndNewlines)
    // WIFEXITED && WEXITSTATUS == 0
    guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
      throw PostgresServerError(
        "\((executable as NSString).lastPathComponent) \(arguments.joined(separator: " ")) failed (status \(status)): \(text.suffix(2000))"
      )
    }
    return text
  }

  /// A bash prologue that closes every descriptor above 2 it inherited.
  static let closingInheritedDescriptors =
    "for fd in /proc/$$/fd/*; do n=${fd##*/}; [ \"$n\" -gt 2 ] && eval \"exec $n>&-\"; done 2>/dev/null; "

  package static func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw PostgresServerError("socket: errno \(errno)") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    guard bound == 0 else { throw PostgresServerError("bind: errno \(errno)") }
    let named = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { throw PostgresServerError("getsockname: errno \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
  }
}

package struct PostgresServerError: Error, CustomStringConvertible {
  package var description: String
  init(_ description: String) { self.description = description }
}

/// Runs `body` with a PostgreSQL server of its own, stopped and removed afterwards.
package func withPostgres<Result>(
  settings: [String: String] = [:], _ body: (PostgresServer) async throws -> Result
) async throws -> Result {
  let server = try PostgresServer.start(settings: settings)
  defer { server.stop() }
  return try await body(server)
}

/// One PostgreSQL server for all the tests of a process, started on first use and stopped (by its
/// pid) when the process exits; each test takes a database of its own.
package enum SharedPostgres {
  private static let server = Mutex<Result<PostgresServer, PostgresServerError>?>(nil)

  /// The shared server, started if it is not yet.
  package static func get() throws -> PostgresServer {
    try server.withLock { server in
      if let server { return try server.get() }
      do {
        let started = try PostgresServer.start()
        server = .success(started)
        atexit { SharedPostgres.stopAtExit() }
        return started
      } catch let error as PostgresServerError {
        server = .failure(error)
        throw error
      } catch {
        let wrapped = PostgresServerError("\(error)")
        server = .failure(wrapped)
        throw wrapped
      }
    }
  }

  /// A new, empty database on the shared server; returns the server and the database's URL.
  package static func database(query: String = "") throws -> (server: PostgresServer, url: String) {
    let server = try get()
    let name = "t_\(UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: ""))"
    try server.psql("CREATE DATABASE \(name)", database: "postgres")
    return (server, server.url(database: name, query: query))
  }

  private static func stopAtExit() {
    if case .success(let running)? = server.withLock({ $0 }) { running.stop() }
  }
}
