import CoreMetrics
import Foundation
import GPSModel
import GPSTestSupport
import SwiftProtobuf
import Testing

@testable import Queue

/// Generates decodable events with extreme values in every numeric field, mostly in an order the
/// reducer accepts (so that runs reach every state), sometimes not.
struct ExtremeEvents {
  var random: SplitMix
  var runs: [RunID] = []
  var eventCounts: [RunID: UInt32] = [:]
  var lastTime: Int64 = 0

  init(seed: UInt64) { random = SplitMix(state: seed) }

  mutating func chance(_ percent: UInt64) -> Bool { random.next() % 100 < percent }

  mutating func int64() -> Int64 {
    let extremes: [Int64] = [
      0, 1, -1, .max, .min, .max - 1, .min + 1, .max - 1_000_000_000_000_000, 253_402_300_799_999_999,
      1_800_000_000_000_000, -62_135_596_800_000_000,
    ]
    return chance(70)
      ? extremes[Int(random.next() % UInt64(extremes.count))] : Int64(bitPattern: random.next())
  }

  mutating func uint32() -> UInt32 {
    let extremes: [UInt32] = [0, 1, 2, 3, .max, .max - 1, UInt32(Int32.max)]
    return chance(70)
      ? extremes[Int(random.next() % UInt64(extremes.count))] : UInt32(truncatingIfNeeded: random.next())
  }

  mutating func int32() -> Int32 { Int32(truncatingIfNeeded: int64()) }

  mutating func string() -> String {
    ["", "a", "server-flow/MyPrefectDeployer", "step", String(repeating: "x", count: 300), "\u{202E}\n\0"][
      Int(random.next() % 6)]
  }

  mutating func bytes() -> Data {
    Data((0..<Int(random.next() % 40)).map { _ in UInt8(truncatingIfNeeded: random.next()) })
  }

  /// The next event, and the sequence it is offered at (usually the next one).
  /// A kind that `run` accepts next (with extreme values where it has numbers), or nil.
  mutating func legalKind(for run: Run?) -> RunEvent.OneOf_Kind? {
    guard let run else { return nil }
    if run.orphaned {
      return chance(50) ? .requeued(.with { $0.scheduledStartMicros = int64() }) : .crashed(.init())
    }
    if run.state.isTerminal { return .retried(.with { $0.scheduledStartMicros = int64() }) }
    if run.isClaimable {
      return .claimed(
        .with {
          $0.scheduler = "s"
          $0.leaseExpiresMicros = int64()
        })
    }
    switch run.state {
    case .pending: return chance(80) ? .started(.init()) : .leaseExpired(.init())
    case .running, .retrying, .awaitingRetry:
      if run.attemptOpen {
        switch random.next() % 5 {
        case 0:
          return .attemptFailed(
            .with {
              $0.step = run.step
              $0.attempt = run.stepAttempt
              $0.durationMicros = int64()
            })
        case 1: return .leaseExpired(.init())
        default:
          return .attemptSucceeded(
            .with {
              $0.step = run.step
              $0.attempt = run.stepAttempt
              $0.durationMicros = int64()
            })
        }
      }
      switch random.next() % 5 {
      case 0: return .completed(.init())
      case 1:
        return .retryScheduled(
          .with {
            $0.step = run.step
            $0.nextAttempt = run.stepAttempt &+ 1
            $0.retryAtMicros = int64()
          })
      case 2: return .cancelRequested(.init())
      default:
        return .attemptStarted(
          .with {
            $0.step = run.step.isEmpty || chance(30) ? "step\(random.next() % 3)" : run.step
            $0.attempt = run.state == .awaitingRetry || chance(50) ? run.stepAttempt &+ 1 : 1
          })
      }
    case .cancelling: return chance(50) ? .cancelled(.init()) : .completed(.init())
    default: return nil
    }
  }

  mutating func next(after sequence: UInt64, at time: Timestamp, in state: QueueState) -> (RunEvent, UInt64) {
    var event = RunEvent()
    lastTime = time.micros
    // Times mostly move forward; sometimes they jump to an extreme (which may go back).
    if chance(97) {
      lastTime = lastTime.addingSaturated(Int64(random.next() % 5_000_000))
    } else {
      lastTime = int64()
    }
    event.timeMicros = lastTime
    let id: RunID
    if runs.isEmpty || chance(15) {
      id = RunID()
      runs.append(id)
    } else {
      id = runs[Int(random.next() % UInt64(runs.count))]
    }
    event.runID = Data(id.bytes)
    let count = eventCounts[id] ?? 0
    event.runEvent = chance(95) ? count &+ 1 : uint32()
    if chance(75), let kind = legalKind(for: state.runs[id]) {
      event.kind = kind
    } else if chance(50), state.runs[id] == nil {
      event.runEvent = 1
      event.kind = .enqueued(
        .with {
          $0.deployment = "flow/deployment"
          $0.flow = "flow"
          $0.scheduledStartMicros = chance(50) ? time.micros : int64()
          $0.timeoutMicros = int64()
          $0.crashPolicy = .with {
            $0.maxRequeues = uint32()
            $0.requeueDelayMicros = int64()
          }
        })
    } else {
      switch random.next() % 20 {
      case 0:
        event.kind = .enqueued(
          .with {
            $0.deployment = chance(80) ? "flow/deployment" : string()
            $0.flow = "flow"
            $0.priority = int32()
            $0.scheduledStartMicros = int64()
            $0.timeoutMicros = int64()
            $0.crashPolicy = .with {
              $0.maxRequeues = uint32()
              $0.requeueDelayMicros = int64()
            }
            $0.tags = chance(50) ? ["t"] : []
            $0.idempotencyKey = chance(30) ? string() : ""
            $0.deploymentVersion = uint32()
          })
      case 1: event.kind = .markedLate(.with { $0.scheduledStartMicros = int64() })
      case 2, 3:
        event.kind = .claimed(
          .with {
            $0.scheduler = string()
            $0.leaseExpiresMicros = int64()
          })
      case 4:
        event.kind = .leaseExpired(
          .with {
            $0.expiredAtMicros = int64()
            $0.lostAttempt = uint32()
          })
      case 5: event.kind = .started(.init())
      case 6, 7:
        event.kind = .attemptStarted(
          .with {
            $0.step = chance(80) ? "step" : string()
            $0.attempt = chance(50) ? 1 : uint32()
          })
      case 8:
        event.kind = .attemptSucceeded(
          .with {
            $0.step = "step"
            $0.attempt = uint32()
            $0.durationMicros = int64()
            $0.result = bytes()
          })
      case 9:
        event.kind = .attemptFailed(
          .with {
            $0.step = "step"
            $0.attempt = uint32()
            $0.statusCode = int32()
            $0.durationMicros = int64()
          })
      case 10:
        event.kind = .retryScheduled(
          .with {
            $0.step = "step"
            $0.nextAttempt = uint32()
            $0.retryAtMicros = int64()
          })
      case 11: event.kind = .completed(.with { $0.result = bytes() })
      case 12: event.kind = .failed(.with { $0.reason = string() })
      case 13: event.kind = .timedOut(.with { $0.reason = string() })
      case 14: event.kind = .cancelRequested(.with { $0.reason = string() })
      case 15: event.kind = .cancelled(.with { $0.reason = string() })
      case 16: event.kind = .crashed(.with { $0.reason = string() })
      case 17: event.kind = .requeued(.with { $0.scheduledStartMicros = int64() })
      case 18: event.kind = .retried(.with { $0.scheduledStartMicros = int64() })
      default:
        // A record of the queue, or an event without a kind.
        if chance(15) {
          event.runID = chance(90) ? Data() : event.runID
          event.kind = .deploymentHandedOver(
            .with {
              $0.deployment = "flow/d\(random.next() % 4)"
              $0.to = chance(90) ? "p\(random.next() % 3)" : ""
            })
        } else if chance(15) {
          event.runID = chance(90) ? Data() : event.runID
          event.kind = .logEventSkipped(.with { $0.sequence = chance(50) ? sequence : .max })
        } else if chance(50) {
          event.runID = Data()
          event.kind = .deploymentRegistered(
            .with {
              $0.version = chance(80) ? 1 : uint32()
              $0.definition = .with {
                $0.name = "flow/d\(random.next() % 3)"
                $0.flow = "flow"
                $0.concurrencyLimit = uint32()
                $0.timeoutMicros = int64()
                $0.priority = int32()
              }
            })
        }
      }
    }
    let offered = chance(97) ? sequence &+ 1 : [0, .max, .max - 1, sequence][Int(random.next() % 4)]
    return (event, offered)
  }

  mutating func applied(_ event: RunEvent) {
    guard let id = RunID(bytes: event.runID) else { return }
    eventCounts[id] = event.runEvent
  }
}

@Suite("The reducer is total")
struct ReducerTotalityTests {
  /// Any sequence of decodable events, with extreme values in every numeric field, applied to the
  /// reducer, the ready index, the metrics and the run index's records: each is applied or refused
  /// with an error, never a trap, and the state's snapshot reads back as the same state.
  @Test(arguments: 0..<40)
  func extremeEventsNeverTrap(seed: UInt64) throws {
    var events = ExtremeEvents(seed: 0xC0FFEE &+ seed &* 7919)
    var state = QueueState()
    var index = ReadyIndex()
    let metrics = QueueMetrics(factory: TestMetricsFactory())
    var applied = 0
    var random = SplitMix(state: seed)
    for _ in 0..<600 {
      let (event, sequence) = events.next(after: state.lastSequence, at: state.lastTime, in: state)
      // Through the log's encoding, as replay reads it.
      let record = LogRecord(sequence: sequence, payload: try event.serializedBytes() as [UInt8])
      let before = try? state.run(event.run ?? RunID(bytes: [UInt8](repeating: 0, count: 16))!)
      do throws(QueueError) {
        try state.apply(record)
      } catch {
        #expect(!error.message.isEmpty)
        continue
      }
      applied += 1
      events.applied(event)
      let nowChoices: [Int64] = [.max, .min, 0, event.timeMicros, event.timeMicros.addingSaturated(1 << 40)]
      let now = Timestamp(micros: nowChoices[Int(random.next() % UInt64(nowChoices.count))])
      if let id = event.run, let run = state.runs[id] {
        index.track(run, now: now, lateAfter: .seconds(15))
        metrics.observe([(before: before ?? nil, after: run, kinds: [event.kind].compactMap { $0 })], at: event.time)
        let record = try run.indexRecord(columns: false) { name in UInt64(name.utf8.count) }
        _ = record
        _ = run.stateSince.description + run.scheduledStart.description + (run.lease?.expiresAt.description ?? "")
      }
      _ = index.next(in: state, now: now, limits: ConcurrencyLimits(deployments: ["flow/deployment": 1]))
      _ = index.dueLate(in: state, now: now)
      _ = index.nextDeadline
      _ = event.time.description
    }
    #expect(applied > 150, "the generator should reach deep states, not only be refused")
    let reached = Set(state.runs.values.map(\.state))
    #expect(reached.count >= 4, "states reached: \(reached)")
    _ = ReadyIndex(state: state, now: Timestamp(micros: .max), lateAfter: .seconds(15), grace: .seconds(30))
    _ = ReadyIndex(
      state: state, now: Timestamp(micros: .min), lateAfter: .seconds(Int64.max), grace: .seconds(Int64.max))
    metrics.record(state.counts)
    let reread = QueueState(snapshotPayload: state.snapshotPayload())
    #expect(reread == state)
  }

  /// Timestamps and durations at the ends of their range: saturating arithmetic and a printable form.
  @Test func timeArithmeticSaturates() {
    #expect((Timestamp(micros: .max) + .seconds(1)).micros == .max)
    #expect((Timestamp(micros: .min) + .seconds(-1)).micros == .min)
    #expect((Timestamp(micros: .min) - .seconds(1)).micros == .min)
    #expect(Timestamp(micros: .max) - Timestamp(micros: .min) > .seconds(1 << 40))
    #expect(Duration.seconds(Int64.max).micros == .max)
    #expect(Duration.seconds(Int64.min).micros == .min)
    #expect(Timestamp(micros: .min).description.hasSuffix(".224192Z"))
    #expect(Timestamp(micros: -1).description == "1969-12-31T23:59:59.999999Z")
    #expect(Timestamp(Date(timeIntervalSince1970: 1e300)).micros == .max)
    #expect(Timestamp(Date(timeIntervalSince1970: -1e300)).micros == .min)
  }

  /// The poison: an enqueue with a start of 2^63-1, -2^63 or 2^63-1-10^15 µs trapped the
  /// ready index at every later start. Written to the log as an older version would have, the
  /// queue opens, serves and reopens.
  @Test(arguments: [Int64.max, Int64.min, Int64.max - 1_000_000_000_000_000])
  func aLogHoldingAnExtremeStartOpens(start: Int64) async throws {
    try await withTemporaryDirectory { directory in
      let clock = ManualClock()
      var options = QueueOptions()
      options.runIndex = RunIndexOptions()
      options.metrics = TestMetricsFactory()
      do {
        let queue = try RunQueue(directory: directory.path, options: options, clock: clock)
        // The door refuses it now, naming the field and the range.
        var request = EnqueueRequest(deployment: "flow/deployment", flow: "flow")
        request.scheduledStart = Timestamp(micros: start)
        request.timeout = .microseconds(Int64.max)
        let error = await #expect(throws: QueueError.self) { try await queue.enqueue(request) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("scheduled_start") == true)
        #expect(error?.message.contains("a time lies in the years 0000 to 9999 (RFC 3339)") == true)
        #expect(queue.durableSequence == 0)
        queue.close()
      }
      // What an older version wrote, straight into the log.
      do {
        let log = try EventLog(directory: directory.path)
        let event = RunEvent.with {
          $0.timeMicros = clock.now().micros
          $0.runID = Data(RunID().bytes)
          $0.runEvent = 1
          $0.kind = .enqueued(
            .with {
              $0.deployment = "flow/deployment"
              $0.flow = "flow"
              $0.scheduledStartMicros = start
              $0.timeoutMicros = .max
              $0.crashPolicy = .with {
                $0.maxRequeues = .max
                $0.requeueDelayMicros = .min
              }
            })
        }
        _ = try await log.append([try event.serializedBytes() as [UInt8]])
        log.close()
      }
      for _ in 0..<2 {
        let queue = try RunQueue(directory: directory.path, options: options, clock: clock)
        clock.advance(by: .seconds(3600))
        try await queue.tick()
        _ = queue.nextDeadline
        let claimed = try await queue.claim(scheduler: "s")
        if start < clock.now().micros { #expect(claimed != nil) } else { #expect(claimed == nil) }
        queue.close()
      }
      let verified = try LogVerifier(directory: directory.path).verify()
      #expect(verified.problem == nil)
    }
  }
}

/// Metrics that go nowhere: the handlers run, nothing is kept.
final class TestMetricsFactory: MetricsFactory, Sendable {
  final class Handler: CounterHandler, FloatingPointCounterHandler, RecorderHandler, TimerHandler, Sendable {
    func increment(by: Int64) {}
    func increment(by: Double) {}
    func reset() {}
    func record(_ value: Int64) {}
    func record(_ value: Double) {}
    func recordNanoseconds(_ duration: Int64) {}
  }
  func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler { Handler() }
  func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
    Handler()
  }
  func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler { Handler() }
  func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { Handler() }
  func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler { fatalError("unused") }
  func destroyCounter(_ handler: any CounterHandler) {}
  func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {}
  func destroyRecorder(_ handler: any RecorderHandler) {}
  func destroyTimer(_ handler: any TimerHandler) {}
  func destroyMeter(_ handler: any MeterHandler) {}
}
