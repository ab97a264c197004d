import Flows
import Foundation
import GPSModel
import Queue
import Web

/// The fuzz targets, by name: what `make fuzz` runs under libFuzzer, one process per target.
enum FuzzTarget: String, CaseIterable {
  case batch, reducer, parameters, registration, request

  /// Every proto of the repository: the parameters target validates into its messages.
  static let pool: DescriptorPool = {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent()
    guard let data = try? Data(contentsOf: root.appendingPathComponent("protos/gps.desc")),
      let pool = try? DescriptorPool(descriptorSet: data)
    else { fatalError("cannot read protos/gps.desc (run make proto)") }
    return pool
  }()

  func run(_ data: [UInt8]) {
    switch self {
    case .batch: QueueFuzzing.batchDecoder(data)
    case .reducer: QueueFuzzing.reducer(data)
    case .parameters: FlowsFuzzing.parameters(data, pool: Self.pool)
    case .registration: FlowsFuzzing.registration(data)
    case .request: WebFuzzing.request(data)
    }
  }
}

#if FUZZING
  /// libFuzzer's entry: the target is named by GPS_FUZZ_TARGET.
  nonisolated(unsafe) let target: FuzzTarget = {
    guard let name = ProcessInfo.processInfo.environment["GPS_FUZZ_TARGET"], let target = FuzzTarget(rawValue: name)
    else {
      fatalError("set GPS_FUZZ_TARGET to one of \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    _ = FuzzTarget.pool
    return target
  }()

  @_cdecl("LLVMFuzzerTestOneInput")
  public func fuzz(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    target.run(start.map { Array(UnsafeBufferPointer(start: $0, count: count)) } ?? [])
    return 0
  }

  /// libFuzzer's driver (in its runtime, linked by -sanitize=fuzzer).
  @_silgen_name("LLVMFuzzerRunDriver")
  func runDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
  ) -> CInt

  /// SwiftPM names an executable's entry `GPSFuzz_main` (and points `main` at it): hand over to
  /// libFuzzer's driver there.
  @_cdecl("GPSFuzz_main")
  public func fuzzMain(
    _ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
  ) -> CInt {
    var count = argc
    var arguments = argv
    return runDriver(&count, &arguments) { start, size in fuzz(start, size) }
  }
#else
  /// Without libFuzzer: `gps-fuzz TARGET FILE|DIR…` runs each input once (a crash found by
  /// `make fuzz`, or a whole corpus), and `gps-fuzz seeds DIR` writes the seed corpora.
  @main struct GPSFuzz {
    static func main() throws {
      let arguments = Array(CommandLine.arguments.dropFirst())
      if arguments.first == "seeds", arguments.count == 2 {
        try FuzzSeeds.write(to: arguments[1])
        return
      }
      guard let name = arguments.first, let target = FuzzTarget(rawValue: name), arguments.count > 1 else {
        FileHandle.standardError.write(
          Data(
            "usage: gps-fuzz \(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")) FILE|DIR…, or gps-fuzz seeds DIR\n"
              .utf8))
        exit(2)
      }
      var count = 0
      for path in arguments.dropFirst() {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
          FileHandle.standardError.write(Data("gps-fuzz: error: no such file or directory: \(path)\n".utf8))
          exit(1)
        }
        let files =
          isDirectory.boolValue
          ? try FileManager.default.contentsOfDirectory(atPath: path).sorted().map { path + "/" + $0 } : [path]
        for file in files {
          target.run(Array(try Data(contentsOf: URL(fileURLWithPath: file))))
          count += 1
        }
      }
      print("\(name): \(count) inputs ran clean")
    }
  }
#endif
