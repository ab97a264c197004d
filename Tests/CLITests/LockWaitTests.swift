import Foundation
import GPSModel
import GPSTestSupport
import Queue
import Testing

/// A short-lived command holding the data directory's lock makes others wait, not fail.
@Suite struct LockWaitTests {
  @Test func aServerStartingWhileACommandHoldsTheLockWaitsForIt() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      try await createServerFlowQueue(at: data)
      // Another process holds the lock as a command would, until the test has seen the server
      // wait for it (then it lets go): nothing depends on how fast a busy machine runs either.
      let holder = Process()
      holder.executableURL = URL(fileURLWithPath: "/usr/bin/env")
      holder.arguments = [
        "python3", "-c",
        "import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\nfcntl.flock(fd, fcntl.LOCK_EX)\nos.ftruncate(fd, 0)\nos.write(fd, b'%d command\\n' % os.getpid())\nprint('held', flush=True)\nsys.stdin.readline()",
        data + "/LOCK",
      ]
      let held = Pipe()
      let release = Pipe()
      holder.standardOutput = held
      holder.standardInput = release
      try holder.run()
      _ = held.fileHandleForReading.availableData
      let server = try GPSProcess(["server", "start", "--data-dir", data, "--port", "0", "--no-scheduler"])
      await server.waitForOutput { _, stderr in stderr.contains("waiting for") }
      #expect(
        server.stderr.contains("waiting for process \(holder.processIdentifier) to release \(data)/LOCK"),
        "\(server.stderr)")
      release.fileHandleForWriting.write(Data("go\n".utf8))
      _ = try await server.listeningAddress()
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0, "\(server.stderr)")
    }
  }

  @Test func anEnqueueWhoseAnswerIsLostNamesTheKeyThatMakesARetrySafe() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      try await createServerFlowQueue(at: data)
      // Something that accepts connections and closes them: the answer never comes.
      let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
      defer { close(listener) }
      var address = sockaddr_in()
      address.sin_family = sa_family_t(AF_INET)
      address.sin_addr.s_addr = inet_addr("127.0.0.1")
      var length = socklen_t(MemoryLayout<sockaddr_in>.size)
      _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
          bind(listener, pointer, length)
          return getsockname(listener, pointer, &length)
        }
      }
      listen(listener, 16)
      let port = Int(UInt16(bigEndian: address.sin_port))
      let closer = Thread {
        while true {
          let connection = accept(listener, nil, nil)
          guard connection >= 0 else { return }
          close(connection)
        }
      }
      closer.start()
      let result = try await GPSProcess.run([
        "enqueue", "server-flow/MyPrefectDeployer", "--param", #"data_info={"dataset": "x"}"#, "--server",
        "127.0.0.1:\(port)", "--data-dir", data,
      ])
      #expect(result.status == 1)
      #expect(result.stderr.contains("the run may or may not be enqueued"), "\(result.stderr)")
      #expect(result.stderr.contains(#"--id-key "cli-"#), "\(result.stderr)")
      #expect(result.stderr.split(separator: "\n").count == 1)
    }
  }
}
