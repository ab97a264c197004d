// gps-bench: measures the event log against the disk's raw write + fdatasync limit, in one run.
//
//   gps-bench [--dir DIR] [--seconds S] [--runs N]
//
// For 1, 16 and 256 concurrent appenders of random (incompressible) 200-byte events (fsync policy
// `always`) it reports
// events/s, append latency p50/p99, the mean batch size, and the ratio to the raw limit: a minimal
// loop of write + fdatasync of frames of that same mean size, measured right after, on the same file
// system. Then replay speed (1,000,000 events from the page cache) and LZ4's ratio on run-like events.
import CJemalloc
import Foundation
import GPSModel
import Queue

#if canImport(Glibc)
  import Glibc
#endif

struct Arguments {
  var directory = FileManager.default.currentDirectoryPath + "/.build-bench"
  var seconds = 3.0
  var runs = 3
  var compressionThreshold = LogOptions().compressionThreshold
  var appenders = [1, 16, 256]
  /// Which parts to run: log, queue (or both).
  var suites: Set<String> = ["log", "queue", "e2e", "control"]
  var e2eRuns = 20_000
  var startupRuns = 1_000_000
  var claimRuns = 20_000
  var scaleRuns = 1_000_000
  /// Keeps the scale suite's history after the run and reuses one kept before (same size).
  var scaleKeep = false

  init() {
    var iterator = CommandLine.arguments.dropFirst().makeIterator()
    while let flag = iterator.next() {
      switch flag {
      case "--dir": directory = iterator.next()!
      case "--seconds": seconds = Double(iterator.next()!)!
      case "--runs": runs = Int(iterator.next()!)!
      case "--compression-threshold": compressionThreshold = Int(iterator.next()!)!
      case "--appenders": appenders = iterator.next()!.split(separator: ",").map { Int($0)! }
      case "--only": suites = Set(iterator.next()!.split(separator: ",").map(String.init))
      case "--startup-runs": startupRuns = Int(iterator.next()!)!
      case "--claim-runs": claimRuns = Int(iterator.next()!)!
      case "--e2e-runs": e2eRuns = Int(iterator.next()!)!
      case "--scale-runs": scaleRuns = Int(iterator.next()!)!
      case "--scale-keep": scaleKeep = true
      default:
        FileHandle.standardError.write(Data("unknown flag \(flag)\n".utf8))
        exit(2)
      }
    }
  }
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

func percentile(_ sorted: [Double], _ p: Double) -> Double {
  sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

func freshDirectory(_ path: String) -> String {
  try? FileManager.default.removeItem(atPath: path)
  try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  return path
}

/// The raw limit: write + fdatasync of `size`-byte frames in a loop, for `seconds`. Returns syncs/s.
func rawSyncsPerSecond(directory: String, size: Int, seconds: Double) -> Double {
  let path = directory + "/raw.bin"
  let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644)
  precondition(fd >= 0)
  defer {
    close(fd)
    unlink(path)
  }
  let buffer = [UInt8](repeating: 0xAB, count: max(size, 1))
  let start = ContinuousClock.now
  var count = 0
  while true {
    _ = buffer.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    fdatasync(fd)
    count += 1
    let elapsed = ContinuousClock.now - start
    if elapsed >= .seconds(seconds) { return Double(count) / elapsed.seconds }
  }
}

extension Duration {
  var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

struct AppendResult {
  var eventsPerSecond: Double
  var p50: Double
  var p99: Double
  var eventsPerBatch: Double
  var bytesPerBatch: Double
}

/// `appenders` tasks append one 200-byte event at a time for `seconds`.
func measureLog(directory: String, appenders: Int, seconds: Double, options: LogOptions) async throws -> AppendResult {
  let dir = freshDirectory(directory + "/log-\(appenders)")
  let log = try EventLog(directory: dir, options: options)
  // Incompressible payloads: LZ4 is tried on every batch and gains nothing, the conservative case.
  var generator = SystemRandomNumberGenerator()
  let events = (0..<1024).map { _ in (0..<200).map { _ in UInt8.random(in: 0...255, using: &generator) } }
  let start = ContinuousClock.now
  let deadline = start + .seconds(seconds)
  let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
    for _ in 0..<appenders {
      group.addTask {
        var local: [Double] = []
        var index = Int.random(in: 0..<events.count)
        while ContinuousClock.now < deadline {
          let before = ContinuousClock.now
          index = (index + 1) % events.count
          _ = try await log.append([events[index]])
          local.append((ContinuousClock.now - before).seconds * 1000)
        }
        return local
      }
    }
    return try await group.reduce(into: [Double]()) { $0 += $1 }.sorted()
  }
  let elapsed = (ContinuousClock.now - start).seconds
  log.close()
  let report = try LogVerifier(directory: dir).verify()
  precondition(report.isIntact && report.records == UInt64(latencies.count))
  let logBytes = Double(report.bytes - report.segments * LogFormat.segmentHeaderSize)
  return AppendResult(
    eventsPerSecond: Double(latencies.count) / elapsed, p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99), eventsPerBatch: Double(report.records) / Double(report.batches),
    bytesPerBatch: logBytes / Double(report.batches))
}

func runEvent(_ index: Int) -> [UInt8] {
  let types = ["RunEnqueued", "RunClaimed", "RunStarted", "TaskAttemptStarted", "TaskAttemptSucceeded", "RunCompleted"]
  let run = String(
    format: "%08x-%04x-4%03x-a%03x-%012x", index / 6 * 2_654_435_761 & 0xffff_ffff, index / 6 % 65536, index / 6 % 4096,
    index / 6 % 4096, index / 6 * 40503)
  let json = """
    {"seq":\(index + 1),"ts":"2026-11-26T15:\(String(format: "%02d", index / 6000 % 60)):\(String(format: "%02d.%06d", index / 100 % 60, index * 7919 % 1_000_000))Z","run_id":"\(run)","run_event":\(index % 6 + 1),"type":"\(types[index % 6])","deployment":"server-flow/MyPrefectDeployer","step":"\(index % 2 == 0 ? "prepare" : "process")","attempt":1,"scheduler":"sched-\(index % 4)","parameters":{"data_info":{"object_storage_urls":["a"],"dataset":"b"}}}
    """
  return Array(json.utf8)
}

/// Prints one line and flushes it, even into a file: a run that is stopped still shows the figures
/// it measured.
func print(_ line: String) {
  Swift.print(line)
  fflush(nil)
}

@main
struct Bench {
  static func main() async throws {
    if let first = CommandLine.arguments.dropFirst().first, StressCommand.names.contains(first) {
      await StressCommand.run(Array(CommandLine.arguments.dropFirst()))
      return
    }
    let arguments = Arguments()
    let directory = freshDirectory(arguments.directory)
    let allocator = gps_jemalloc_version().map { "jemalloc \(String(cString: $0).prefix { $0 != "-" })" } ?? "glibc"
    print(
      "gps-bench: \(arguments.runs) runs of \(arguments.seconds) s per figure, in \(directory); malloc: \(allocator)")
    if arguments.suites.contains("log") { try await benchLog(arguments, directory: directory) }
    if arguments.suites.contains("snapshot-decode") {
      try benchSnapshotDecode(runs: arguments.startupRuns, repetitions: arguments.runs)
    }
    if arguments.suites.contains("queue") {
      try await benchClaims(
        directory: directory, runs: arguments.claimRuns, claimers: 16, repetitions: arguments.runs,
        seconds: arguments.seconds)
      try await benchStartup(directory: directory, runs: arguments.startupRuns, repetitions: arguments.runs)
    }
    if arguments.suites.contains("e2e") {
      let concurrency = Int(ProcessInfo.processInfo.environment["GPS_BENCH_CONCURRENCY"] ?? "64")!
      try await benchEndToEnd(
        directory: directory, runs: arguments.e2eRuns, concurrency: concurrency, latencyRuns: 300,
        repetitions: arguments.runs)
      try await benchEndToEndSeparateServices(
        directory: directory, runs: arguments.e2eRuns, concurrency: concurrency, repetitions: arguments.runs)
    }
    if arguments.suites.contains("scheduler") {
      try await benchSchedulerAlone(
        directory: directory, runs: arguments.e2eRuns, concurrency: 64, repetitions: arguments.runs)
    }
    if arguments.suites.contains("metrics") {
      try await benchMetricsCost(
        directory: directory, runs: arguments.e2eRuns, concurrency: 64, repetitions: arguments.runs)
    }
    if arguments.suites.contains("scale") {
      try await benchScale(
        directory: directory, runs: arguments.scaleRuns, active: 10_000, repetitions: arguments.runs,
        keep: arguments.scaleKeep)
    }
    if arguments.suites.contains("web") {
      try await benchWeb(directory: directory, runs: arguments.startupRuns, repetitions: arguments.runs)
    }
    if arguments.suites.contains("store") {
      try await benchStore(
        directory: directory, seconds: arguments.seconds, repetitions: arguments.runs, runs: arguments.e2eRuns,
        concurrency: 64)
      try await benchFailover(directory: directory, repetitions: 5)
    }
    if arguments.suites.contains("control") {
      try await benchControl(
        directory: directory, clients: 64, seconds: arguments.seconds, startupRuns: arguments.startupRuns,
        repetitions: arguments.runs)
    }
    // The scale suite's history, when kept, is the one thing left.
    if !arguments.scaleKeep { try? FileManager.default.removeItem(atPath: directory) }
  }

  static func benchLog(_ arguments: Arguments, directory: String) async throws {
    print("")
    print("appenders  events/s   p50 ms   p99 ms   events/batch   raw limit events/s   ratio")
    var logOptions = LogOptions()
    logOptions.compressionThreshold = arguments.compressionThreshold
    for appenders in arguments.appenders {
      var rates: [Double] = [], p50s: [Double] = [], p99s: [Double] = [], perBatch: [Double] = []
      var limits: [Double] = [], ratios: [Double] = []
      for _ in 0..<arguments.runs {
        let result = try await measureLog(
          directory: directory, appenders: appenders, seconds: arguments.seconds, options: logOptions)
        // The raw limit for frames of the mean batch size, measured right after on the same disk.
        let syncs = rawSyncsPerSecond(directory: directory, size: Int(result.bytesPerBatch), seconds: arguments.seconds)
        let limit = syncs * result.eventsPerBatch
        rates.append(result.eventsPerSecond)
        p50s.append(result.p50)
        p99s.append(result.p99)
        perBatch.append(result.eventsPerBatch)
        limits.append(limit)
        ratios.append(result.eventsPerSecond / limit)
      }
      print(
        String(
          format: "%9d  %9.0f  %7.3f  %7.3f  %13.1f  %19.0f  %6.2f", appenders, median(rates), median(p50s),
          median(p99s),
          median(perBatch), median(limits), median(ratios)))
    }

    // Replay from the page cache.
    let replayDirectory = freshDirectory(directory + "/replay")
    var options = LogOptions()
    options.fsync = .none
    let log = try EventLog(directory: replayDirectory, options: options)
    let event = [UInt8](repeating: 0x62, count: 200)
    for _ in 0..<1000 { _ = try await log.append(Array(repeating: event, count: 1000)) }
    log.close()
    let reader = LogReader(directory: replayDirectory)
    _ = try reader.read { _ in }  // warm the page cache
    var replayRates: [Double] = []
    var bytes = 0
    for _ in 0..<arguments.runs {
      let start = ContinuousClock.now
      var count = 0
      bytes = 0
      try reader.read { record in
        count += 1
        bytes += record.payload.count
      }
      precondition(count == 1_000_000)
      replayRates.append(Double(count) / (ContinuousClock.now - start).seconds)
    }
    let rate = median(replayRates)
    print("")
    print(
      String(
        format: "replay: %.0f events/s, %.0f MB/s of payload (1,000,000 x 200-byte events, page cache)", rate,
        rate * 200 / 1e6))

    // Compression on run-like events, batched as the writer batches them.
    let events = (0..<25_600).map(runEvent)
    var raw = 0
    var stored = 0
    for start in stride(from: 0, to: events.count, by: 256) {
      let frame = LogFormat.encodeBatch(
        baseSequence: 1, records: events[start..<(start + 256)], previousHash: LogFormat.zeroHash,
        compressionThreshold: 4096)
      raw += events[start..<(start + 256)].reduce(0) { $0 + 4 + $1.count } + LogFormat.batchHeaderSize
      stored += frame.count
    }
    print(
      String(
        format: "compression: run-like JSON events in batches of 256: %.2fx (%d -> %d bytes)",
        Double(raw) / Double(stored), raw, stored))
  }
}
