import Crypto
import Foundation
import GPSTestSupport
import GRPCCore
import RPC
import Services
import Testing

@Suite struct ObjectStoreTests {
  @Test func mapsS3FileAndBareURLsUnderTheRoot() async throws {
    try await withTemporaryDirectory { root in
      let store = try ObjectStore(root: root.path)
      #expect(try store.lexicalPath(for: "s3://bucket/dir/key.bin") == root.path + "/bucket/dir/key.bin")
      #expect(try store.lexicalPath(for: "file://\(root.path)/x/y") == root.path + "/x/y")
      #expect(try store.lexicalPath(for: "a") == root.path + "/a")
      #expect(try store.lexicalPath(for: "dir/./b") == root.path + "/dir/b")
      #expect(try store.lexicalPath(for: "dir/../a") == root.path + "/a")
    }
  }

  @Test(arguments: [
    ("../secret", ObjectStoreError.Code.outsideRoot),
    ("s3://bucket/../../secret", .outsideRoot),
    ("file:///etc/passwd", .outsideRoot),
    ("..", .outsideRoot),
    ("http://example.com/a", .unsupportedScheme),
    ("gs://bucket/a", .unsupportedScheme),
    ("s3://bucket", .invalidURL),
    ("s3://bucket/", .invalidURL),
    ("s3:///key", .invalidURL),
    ("file://relative/path", .invalidURL),
    ("/etc/passwd", .invalidURL),
    ("", .invalidURL),
    ("s3://bkt/k1\u{0}zz", .invalidURL),
    ("a\u{0}.txt", .invalidURL),
  ])
  func refusesURLsThatAreMalformedOrLeaveTheRoot(url: String, code: ObjectStoreError.Code) async throws {
    try await withTemporaryDirectory { root in
      let store = try ObjectStore(root: root.appendingPathComponent("store").path, creating: true)
      let error = #expect(throws: ObjectStoreError.self) { try store.lexicalPath(for: url) }
      #expect(error?.code == code)
      #expect(error?.message.contains(quotedInput(url)) == true || url.isEmpty, "\(error?.message ?? "")")
    }
  }

  @Test func aNulByteNeverOpensTheObjectBeforeIt() async throws {
    try await withTemporaryDirectory { root in
      try root.writeFile("a", Array("x".utf8))
      let store = try ObjectStore(root: root.path)
      let error = await #expect(throws: ObjectStoreError.self) { try await store.describe(url: "a\u{0}.txt") }
      #expect(error?.code == .invalidURL)
      #expect(error?.message.contains("NUL byte at offset 1") == true, "\(error?.message ?? "")")
    }
  }

  @Test func anErrorAboutAHugeURLQuotesAPrefixAndTheLength() throws {
    let url = String(repeating: "k", count: 100_000)
    let store = try ObjectStore(root: FileManager.default.temporaryDirectory.path)
    let error = #expect(throws: ObjectStoreError.self) { try store.lexicalPath(for: "/" + url) }
    #expect((error?.message.utf8.count ?? .max) < 400)
    #expect(error?.message.contains("(100001 bytes)") == true, "\(error?.message ?? "")")
  }

  @Test func hashesObjectsAndReportsMissingOnes() async throws {
    try await withTemporaryDirectory { root in
      try root.writeFile("bucket/k", Array("hello".utf8))
      let store = try ObjectStore(root: root.path)
      let object = try await store.describe(url: "s3://bucket/k")
      #expect(object.sizeBytes == 5)
      #expect(object.sha256 == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
      let error = await #expect(throws: ObjectStoreError.self) { try await store.describe(url: "s3://bucket/nope") }
      #expect(error?.code == .notFound)
      #expect(error?.message.contains("s3://bucket/nope") == true)
      let directory = await #expect(throws: ObjectStoreError.self) { try await store.describe(url: "bucket") }
      #expect(directory?.code == .notAnObject)
    }
  }

  @Test func streamsALargeObjectInChunks() async throws {
    try await withTemporaryDirectory { root in
      // Larger than several read chunks and not a multiple of the chunk size.
      var generator = SystemRandomNumberGenerator()
      let bytes = (0..<(3 * 1024 * 1024 + 12345)).map { _ in UInt8.random(in: 0...255, using: &generator) }
      try root.writeFile("big.bin", bytes)
      let object = try await ObjectStore(root: root.path).describe(url: "big.bin")
      #expect(object.sizeBytes == UInt64(bytes.count))
      #expect(object.sha256 == SHA256.hash(data: bytes).hexString)
    }
  }

  @Test func refusesSymbolicLinksThatLeaveTheRootButFollowThoseInside() async throws {
    try await withTemporaryDirectory { base in
      let root = base.appendingPathComponent("root")
      try base.writeFile("outside.txt", Array("secret".utf8))
      try root.writeFile("inside.txt", Array("fine".utf8))
      let fm = FileManager.default
      try fm.createSymbolicLink(atPath: root.path + "/out", withDestinationPath: base.path + "/outside.txt")
      try fm.createSymbolicLink(atPath: root.path + "/outdir", withDestinationPath: base.path)
      try fm.createSymbolicLink(atPath: root.path + "/in", withDestinationPath: root.path + "/inside.txt")
      let store = try ObjectStore(root: root.path)
      for url in ["out", "outdir/outside.txt", "s3://outdir/outside.txt"] {
        let error = await #expect(throws: ObjectStoreError.self) { try await store.describe(url: url) }
        #expect(error?.code == .outsideRoot, "\(url)")
      }
      #expect(try await store.describe(url: "in").sizeBytes == 4)
    }
  }

  @Test func refusesARootThatDoesNotExist() async {
    await withTemporaryDirectory { base in
      let error = #expect(throws: ObjectStoreError.self) {
        try ObjectStore(root: base.appendingPathComponent("missing").path)
      }
      #expect(error?.code == .invalidRoot)
      #expect(error?.message.contains("missing' does not exist") == true)
      // Flags are the CLI's to name (CommandLineTests): the library names none.
      #expect(error?.message.contains("--") == false)
    }
  }
}

extension ObjectStore {
  init(root: String, creating: Bool) throws {
    if creating { try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true) }
    try self.init(root: root)
  }
}

@Suite struct BoundedErrorsTests {
  @Test func aLongStatusMessageIsCutWithItsLengthAndKeepsItsCode() {
    let long = RPCError(code: .invalidArgument, message: String(repeating: "m", count: 100_000))
    let bounded = BoundedErrorsInterceptor.bounded(long, limit: 2048)
    #expect(bounded.code == .invalidArgument)
    #expect(bounded.message.utf8.count < 2200)
    #expect(bounded.message.hasSuffix("(message cut at 2048 of 100000 bytes)"))
    let short = RPCError(code: .notFound, message: "no such object")
    #expect(BoundedErrorsInterceptor.bounded(short, limit: 2048).message == "no such object")
  }
}
