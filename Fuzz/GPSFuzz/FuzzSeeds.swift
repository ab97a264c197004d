import Flows
import Foundation
import GPSModel
import Queue
import SwiftProtobuf

/// The seed corpora of the fuzz targets (committed under `Fuzz/corpus/`; `gps-fuzz seeds DIR`
/// writes them again): valid inputs of each kind, from which libFuzzer's mutations start.
enum FuzzSeeds {
  static func write(to directory: String) throws {
    for (target, seeds) in all() {
      let folder = directory + "/" + target.rawValue
      try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
      for (index, seed) in seeds.enumerated() {
        try Data(seed).write(to: URL(fileURLWithPath: folder + "/seed-\(index)"))
      }
    }
  }

  static func all() -> [(FuzzTarget, [[UInt8]])] {
    [
      (.batch, batches()), (.reducer, reducers()), (.parameters, parameters()), (.registration, registrations()),
      (.request, requests()),
    ]
  }

  /// One run's life: enqueued, claimed, started, a failed attempt, a retry, a success, completed;
  /// and a second run cancelled, then retried.
  static func lifecycle(start: Int64 = 1_800_000_000_000_000, extreme: Int64 = 0) -> [RunEvent] {
    let run = Data(RunID().bytes)
    let other = Data(RunID().bytes)
    var time = start
    var counts: [Data: UInt32] = [:]
    func event(_ id: Data, _ kind: RunEvent.OneOf_Kind) -> RunEvent {
      time += 1000
      counts[id, default: 0] += 1
      return RunEvent.with {
        $0.timeMicros = time
        $0.runID = id
        $0.runEvent = counts[id]!
        $0.kind = kind
      }
    }
    return [
      event(
        run,
        .enqueued(
          .with {
            $0.deployment = "flow/deployment"
            $0.flow = "flow"
            $0.scheduledStartMicros = extreme == 0 ? start : extreme
            $0.timeoutMicros = extreme
            $0.tags = ["t"]
            $0.idempotencyKey = "k"
            $0.crashPolicy = .with { $0.maxRequeues = 2 }
          })),
      event(
        run,
        .claimed(
          .with {
            $0.scheduler = "s"
            $0.leaseExpiresMicros = extreme == 0 ? start + 30_000_000 : extreme
          })),
      event(run, .started(.init())),
      event(
        run,
        .attemptStarted(
          .with {
            $0.step = "a"
            $0.attempt = 1
          })),
      event(
        run,
        .attemptFailed(
          .with {
            $0.step = "a"
            $0.attempt = 1
            $0.statusCode = 14
            $0.durationMicros = extreme
          })),
      event(
        run,
        .retryScheduled(
          .with {
            $0.step = "a"
            $0.nextAttempt = 2
            $0.retryAtMicros = extreme
          })),
      event(
        run,
        .attemptStarted(
          .with {
            $0.step = "a"
            $0.attempt = 2
          })),
      event(
        run,
        .attemptSucceeded(
          .with {
            $0.step = "a"
            $0.attempt = 2
            $0.result = Data([1, 2, 3])
          })),
      event(run, .completed(.with { $0.result = Data([1, 2, 3]) })),
      event(
        other,
        .enqueued(
          .with {
            $0.deployment = "flow/deployment"; $0.flow = "flow"
          })),
      event(other, .cancelled(.with { $0.reason = "no" })),
      event(other, .retried(.with { $0.scheduledStartMicros = extreme })),
      event(other, .claimed(.with { $0.scheduler = "s" })),
      event(other, .leaseExpired(.init())),
      event(other, .requeued(.with { $0.scheduledStartMicros = extreme })),
    ]
  }

  static func batches() -> [[UInt8]] {
    let records = lifecycle().map { try! $0.serializedBytes() as [UInt8] }
    let plain = LogFormat.encodeBatch(
      baseSequence: 1, records: records, previousHash: LogFormat.zeroHash, compressionThreshold: .max)
    let compressed = LogFormat.encodeBatch(
      baseSequence: 1, records: records + records, previousHash: LogFormat.zeroHash, compressionThreshold: 0)
    let segment = LogFormat.segmentHeader(firstSequence: 1)
    return [
      [0] + segment + plain, [0] + segment + compressed, [0] + segment + plain + compressed, [1] + plain,
      [1] + compressed, [0] + segment,
    ]
  }

  /// Events as the reducer target reads them: a length byte, then the event.
  static func framed(_ events: [RunEvent]) -> [UInt8] {
    events.flatMap { event -> [UInt8] in
      let bytes = try! event.serializedBytes() as [UInt8]
      return bytes.count < 256 ? [UInt8(bytes.count)] + bytes : []
    }
  }

  static func reducers() -> [[UInt8]] {
    [framed(lifecycle())]
      + [Int64.max, .min, .max - 1_000_000_000_000_000, -1].map { framed(lifecycle(extreme: $0)) }
  }

  static func parameters() -> [[UInt8]] {
    [
      #"{"data_info": {"object_storage_urls": ["a"], "dataset": "b"}}"#,
      #"{"event": {"time_micros": "5", "enqueued": {"deployment": "a/b", "tags": ["x"], "priority": -3}}}"#,
      #"{"definition": {"name": "a/b", "steps": [{"name": "s", "max_attempts": 3, "jitter": 0.5}], "crash_policy": {"max_requeues": 1}}}"#,
      #"{"at": "2026-12-01T12:00:00.5Z", "wait": "1.5s", "extra": {"a": [1, "b", null, true]}, "count": null}"#,
      #"{"sizes": [1, "2", -9223372036854775808], "ratio": "NaN", "name": "\u00e9"}"#,
      #"{"event": {"attemptFailed": {"statusCode": 14, "message": "x"}, "runId": "AAEC"}}"#,
    ].map { Array($0.utf8) }
  }

  static func registrations() -> [[UInt8]] {
    let pool = FuzzTarget.pool
    func definition(_ type: String, defaultJSON: String = "") -> DeploymentDefinition {
      .with {
        $0.name = "flow/deployment"
        $0.flow = "flow"
        $0.steps = [
          .with {
            $0.name = "a"
            $0.maxAttempts = 3
            $0.retryableCodes = [14]
            $0.resultType = "gps.v1.Response"
          }
        ]
        $0.resultType = "gps.v1.Response"
        $0.descriptorSet = pool.descriptorSet(for: [type, "gps.v1.Response"])
        $0.parameters = [
          .with {
            $0.name = "p"
            $0.type = type
            $0.required = defaultJSON.isEmpty
            $0.defaultJson = defaultJSON
          },
          .with {
            $0.name = "n"
            $0.type = "repeated int64"
            $0.required = false
            $0.defaultJson = "[1]"
          },
        ]
      }
    }
    return [
      definition("gps.v1.DataInfo"), definition("gps.v1.Event"), definition("gps.v1.DeploymentDefinition"),
      definition("gps.v1.DataInfo", defaultJSON: #"{"dataset": "b"}"#),
    ].map { try! $0.serializedBytes() as [UInt8] }
  }

  static func requests() -> [[UInt8]] {
    [
      "18446744073709551615\n9223372036854775807\n0\n+1\n-1\n",
      "2026-12-01T12:00:00Z\n2026-12-01T12:00\n1796126400000000\n",
      "100\n1000\n+0\n99999999999999999999\n",
      "90s\n5m\n2h\n1e300d\nnans\n-1s\n",
      "127.0.0.1:4280\nlocalhost:4280\n[::1]:4280\ngps.example.com\nevil.example:4280\n[::1\n:\n",
      "/runs\n//evil.example\n/\\evil\n/\t/evil\nhttps://evil\n",
      "Bearer 0123456789abcdef\nbearer  x\nBasic abc\nBearer\n",
      #"{"deployment": "server-flow/MyPrefectDeployer", "parameters": {"data_info": {"dataset": "b"}}}"#,
    ].map { Array($0.utf8) }
  }
}
