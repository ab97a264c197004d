import Foundation
import GPSModel
import GPSServerTesting
import Queue
import SwiftProtobuf

#if canImport(Glibc)
  import Glibc
#endif

/// The id of the benchmark's run number `index`.
func benchRunID(index: Int) -> Data {
  Data(withUnsafeBytes(of: (UInt64(index), UInt64(0x4750_5342_454e_4348))) { Array($0) })
}

/// The record of a run's next event: its number and the time (37 µs on) advance.
func nextEventRecord(_ kind: RunEvent.OneOf_Kind, of id: Data, number: inout UInt32, time: inout Int64) -> [UInt8] {
  number += 1
  time += 37
  let event = RunEvent.with {
    $0.timeMicros = time
    $0.runID = id
    $0.runEvent = number
    $0.kind = kind
  }
  return try! event.serializedBytes()
}

/// The eight events of one completed run of server-flow, as the scheduler would log them.
func completedRunEvents(index: Int, time: inout Int64) -> [[UInt8]] {
  let id = benchRunID(index: index)
  var number: UInt32 = 0
  func event(_ kind: RunEvent.OneOf_Kind) -> [UInt8] { nextEventRecord(kind, of: id, number: &number, time: &time) }
  let start = time
  // Results carry digests: 64 hex characters that do not compress.
  var seed = UInt64(index) &* 0x9E37_79B9_7F4A_7C15
  func digest() -> Data {
    Data(
      (0..<64).map { _ in
        seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Array("0123456789abcdef".utf8)[Int(seed >> 60)]
      })
  }
  let manifest = Data("a".utf8) + digest() + Data(repeating: 0x08, count: 40)
  let response = Data("b".utf8) + digest() + Data(repeating: 0x10, count: 15)
  return [
    event(
      .enqueued(
        .with {
          $0.deployment = "server-flow/MyPrefectDeployer"
          $0.flow = "server-flow"
          $0.parametersJson = #"{"data_info":{"object_storage_urls":["a"],"dataset":"b"}}"#
          $0.parameters = [
            .with {
              $0.name = "data_info"
              $0.type = "gps.v1.DataInfo"
              $0.value = Data([0x0a, 0x01, 0x61, 0x12, 0x01, 0x62])
            }
          ]
          $0.idempotencyKey = "bench-\(index)"
          $0.tags = ["bench"]
          $0.scheduledStartMicros = start
        })),
    event(
      .claimed(
        .with {
          $0.scheduler = "sched-\(index % 4)"
          $0.leaseExpiresMicros = time + 30_000_000
        })),
    event(.started(.init())),
    event(
      .attemptStarted(
        .with {
          $0.step = "prepare"
          $0.attempt = 1
        })),
    event(
      .attemptSucceeded(
        .with {
          $0.step = "prepare"
          $0.attempt = 1
          $0.result = manifest
          $0.durationMicros = 900
        })),
    event(
      .attemptStarted(
        .with {
          $0.step = "process"
          $0.attempt = 1
        })),
    event(
      .attemptSucceeded(
        .with {
          $0.step = "process"
          $0.attempt = 1
          $0.result = response
          $0.durationMicros = 700
        })),
    event(
      .completed(
        .with {
          $0.result = response
          $0.resultType = "gps.v1.Response"
        })),
  ]
}

/// Startup of a queue holding `runs` completed runs: full replay, then from a snapshot.
func benchStartup(directory: String, runs: Int, repetitions: Int) async throws {
  let dir = freshDirectory(directory + "/startup")
  let generationStart = ContinuousClock.now
  let events = try await writeCompletedRuns(directory: dir, runs: runs)
  let logBytes = try LogVerifier(directory: dir).verify().bytes
  print(
    String(
      format: "\nstartup: %d completed runs, %d events, %.0f MB of log (written in %.1f s)", runs, events,
      Double(logBytes) / 1e6, (ContinuousClock.now - generationStart).seconds))

  var queueOptions = QueueOptions()
  queueOptions.log.fsync = .none
  var replayTimes: [Double] = []
  var snapshotTimes: [Double] = []
  var residentPerRun: [Double] = []
  var residentPerRunFromSnapshot: [Double] = []
  var readTimes: [Double] = []
  var phases: [StartupReport] = []
  var decodeTimes: [Double] = []
  var snapshotBytes = 0
  for _ in 0..<repetitions {
    try? FileManager.default.removeItem(atPath: dir + "/snapshots")
    _ = try LogReader(directory: dir).read { _ in }  // the log in the page cache for both cases
    let residentBefore = residentBytes()
    var start = ContinuousClock.now
    var queue: RunQueue? = try RunQueue(directory: dir, options: queueOptions)
    replayTimes.append((ContinuousClock.now - start).seconds)
    precondition(queue!.startup.snapshotSequence == nil && queue!.state.runs.count == runs)
    residentPerRun.append(Double(residentBytes() - residentBefore) / Double(runs))
    queue!.close()  // writes the snapshot
    queue = nil
    snapshotBytes = try FileManager.default.contentsOfDirectory(atPath: dir + "/snapshots").reduce(0) {
      $0 + ((try? FileManager.default.attributesOfItem(atPath: dir + "/snapshots/" + $1)[.size] as? Int) ?? 0)
    }
    let residentBeforeSnapshot = residentBytes()
    start = ContinuousClock.now
    queue = try RunQueue(directory: dir, options: queueOptions)
    snapshotTimes.append((ContinuousClock.now - start).seconds)
    phases.append(queue!.startup)
    residentPerRunFromSnapshot.append(Double(residentBytes() - residentBeforeSnapshot) / Double(runs))
    precondition(queue!.startup.snapshotSequence == events && queue!.state.runs.count == runs)
    queue!.close(writingSnapshot: false)
    queue = nil
    // Where the time with a snapshot goes: reading and checking the file, decoding the state.
    start = ContinuousClock.now
    let loaded = try SnapshotStore(directory: dir).loadNewest(matching: LogReader(directory: dir)).snapshot!
    readTimes.append((ContinuousClock.now - start).seconds)
    start = ContinuousClock.now
    let decoded = QueueState(snapshotPayload: loaded.payload)
    decodeTimes.append((ContinuousClock.now - start).seconds)
    precondition(decoded?.runs.count == runs)
  }
  print(
    String(
      format:
        "  full replay: %.2f s (%.0f events/s)   with snapshot: %.3f s (%.0fx faster; snapshot %.0f MB)",
      median(replayTimes), Double(events) / median(replayTimes), median(snapshotTimes),
      median(replayTimes) / median(snapshotTimes), Double(snapshotBytes) / 1e6))
  print(
    String(
      format:
        "  with snapshot: opening the log %.3f s, loading the snapshot %.3f s (reading and matching it %.3f s, decoding %.3f s), indexing %.3f s",
      median(phases.map(\.openingLog.seconds)), median(phases.map(\.loadingSnapshot.seconds)), median(readTimes),
      median(decodeTimes), median(phases.map(\.indexing.seconds))))
  print(
    String(
      format:
        "  memory per run held in state: %.0f bytes resident after a full replay, %.0f after loading the snapshot (strings shared)",
      median(residentPerRun), median(residentPerRunFromSnapshot)))
  try? FileManager.default.removeItem(atPath: dir)
}

/// Writes a log of `runs` completed runs of server-flow (8 events each) into `directory`;
/// returns the number of events.
/// With `longRunSteps` above zero, one more run with that many step attempts (two events each) is
/// written among them: it starts halfway, its events spread over those of the next runs.
func writeCompletedRuns(directory: String, runs: Int, longRunSteps: Int = 0) async throws -> UInt64 {
  var options = LogOptions()
  options.fsync = .none
  let log = try EventLog(directory: directory, options: options)
  var time: Int64 = 1_800_000_000_000_000
  var batch: [[UInt8]] = []
  var long = longRunSteps > 0 ? LongRun(index: runs, steps: longRunSteps) : nil
  for index in 0..<runs {
    batch += completedRunEvents(index: index, time: &time)
    if index >= runs / 2, let events = long?.next(time: &time) {
      batch += events
      if events.isEmpty { long = nil }
    }
    if batch.count >= 4000 {
      _ = try await log.append(batch)
      batch = []
    }
  }
  while let events = long?.next(time: &time), !events.isEmpty { batch += events }
  if !batch.isEmpty { _ = try await log.append(batch) }
  log.close()
  return log.lastSequence
}

/// A run of many step attempts, written a few events at a time.
struct LongRun {
  let id: Data
  let steps: Int
  var number: UInt32 = 0
  var step = 0

  init(index: Int, steps: Int) {
    id = benchRunID(index: index)
    self.steps = steps
  }

  /// The next events (empty once the run completed).
  mutating func next(time: inout Int64) -> [[UInt8]] {
    var kinds: [RunEvent.OneOf_Kind] = []
    if number == 0 {
      kinds = [
        .enqueued(
          .with {
            $0.deployment = "server-flow/MyPrefectDeployer"
            $0.flow = "server-flow"
            $0.parametersJson = #"{"data_info":{"object_storage_urls":["a"],"dataset":"b"}}"#
            $0.tags = ["bench", "long"]
            $0.scheduledStartMicros = time
          }),
        .claimed(
          .with {
            $0.scheduler = "sched-long"
            $0.leaseExpiresMicros = time + 30_000_000_000
          }),
        .started(.init()),
      ]
    } else if step < steps {
      let name = "step-\(step)"
      kinds = [
        .attemptStarted(
          .with {
            $0.step = name
            $0.attempt = 1
          }),
        .attemptSucceeded(
          .with {
            $0.step = name
            $0.attempt = 1
            $0.durationMicros = 40
          }),
      ]
      step += 1
    } else if step == steps {
      kinds = [.completed(.init())]
      step += 1
    }
    return kinds.map { nextEventRecord($0, of: id, number: &number, time: &time) }
  }
}

/// `claimers` tasks claim from a queue holding `runs` ready runs until it is empty.
func benchClaims(directory: String, runs: Int, claimers: Int, repetitions: Int, seconds: Double) async throws {
  print("\nclaims: \(claimers) concurrent claimers, \(runs) ready runs, in-process queue")
  print("fsync    claims/s   claims/batch   raw limit claims/s   ratio")
  for durable in [true, false] {
    var rates: [Double] = [], perBatch: [Double] = [], limits: [Double] = [], ratios: [Double] = []
    for _ in 0..<repetitions {
      let dir = freshDirectory(directory + "/claims")
      var fill = QueueOptions()
      fill.log.fsync = .none
      let filler = try RunQueue(directory: dir, options: fill)
      try await withThrowingTaskGroup(of: Void.self) { group in
        for client in 0..<16 {
          group.addTask {
            for index in stride(from: client, to: runs, by: 16) {
              var request = EnqueueRequest(deployment: "server-flow/MyPrefectDeployer", flow: "server-flow")
              request.idempotencyKey = "claim-\(index)"
              _ = try await filler.enqueue(request)
            }
          }
        }
        try await group.waitForAll()
      }
      filler.close()
      let before = try LogVerifier(directory: dir).verify()
      var options = QueueOptions()
      options.log.fsync = durable ? .always : .none
      let queue = try RunQueue(directory: dir, options: options)
      let start = ContinuousClock.now
      let claimed = try await withThrowingTaskGroup(of: Int.self) { group in
        for claimer in 0..<claimers {
          group.addTask {
            var count = 0
            while try await queue.claim(scheduler: "bench-\(claimer)") != nil { count += 1 }
            return count
          }
        }
        return try await group.reduce(0, +)
      }
      let elapsed = (ContinuousClock.now - start).seconds
      queue.close(writingSnapshot: false)
      precondition(claimed == runs)
      let after = try LogVerifier(directory: dir).verify()
      let batches = Double(after.batches - before.batches)
      let batchBytes = Double(after.bytes - before.bytes) / batches
      let rate = Double(claimed) / elapsed
      rates.append(rate)
      perBatch.append(Double(claimed) / batches)
      if durable {
        let limit =
          rawSyncsPerSecond(directory: dir, size: Int(batchBytes), seconds: seconds) * Double(claimed) / batches
        limits.append(limit)
        ratios.append(rate / limit)
      }
    }
    if durable {
      print(
        String(
          format: "always  %9.0f  %13.1f  %19.0f  %6.2f", median(rates), median(perBatch), median(limits),
          median(ratios)))
    } else {
      print(String(format: "none    %9.0f  %13.1f", median(rates), median(perBatch)) + "                    -       -")
    }
  }
}

/// Decodes a snapshot of `runs` completed runs again and again (for profiling the decoder).
func benchSnapshotDecode(runs: Int, repetitions: Int) throws {
  var state = QueueState()
  var time: Int64 = 1_800_000_000_000_000
  var sequence: UInt64 = 0
  for index in 0..<runs {
    for payload in completedRunEvents(index: index, time: &time) {
      sequence += 1
      try state.apply(LogRecord(sequence: sequence, payload: payload))
    }
  }
  let payload = state.snapshotPayload()
  var times: [Double] = []
  for _ in 0..<repetitions {
    let start = ContinuousClock.now
    let decoded = QueueState(snapshotPayload: payload)
    times.append((ContinuousClock.now - start).seconds)
    precondition(decoded?.runs.count == runs)
  }
  print(String(format: "snapshot decode: %d runs in %.3f s (median of %d)", runs, median(times), repetitions))
}
