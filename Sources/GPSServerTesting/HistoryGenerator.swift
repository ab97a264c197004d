import Foundation
package import GPSModel
package import Queue
import SwiftProtobuf

/// Large histories for the scale benchmark and the scale test, through the queue's real commands
/// (enqueue, claim, one report of the scheduler's events per run): runs of `server-flow` with a
/// tag and an idempotency key each.
package enum HistoryGenerator {
  /// Writes the history with 32 concurrent workers, each enqueueing a run, claiming one and
  /// reporting it to Completed in one commit (the scheduler's own events); then `active` runs left
  /// Scheduled. Calls `progress` after every 10% (at least `progressEvery` runs). Returns the oldest run.
  package static func generate(
    _ queue: RunQueue, runs: Int, active: Int, progressEvery: Int = 100_000,
    progress: @Sendable (Int) async -> Void
  ) async throws -> Run {
    let every = max(progressEvery, runs / 10)
    let parameters = #"{"data_info":{"object_storage_urls":["a"],"dataset":"b"}}"#
    @Sendable func request(_ index: Int) -> EnqueueRequest {
      var request = EnqueueRequest(
        deployment: "server-flow/MyPrefectDeployer", flow: "server-flow", parametersJSON: parameters)
      request.tags = ["scale"]
      request.idempotencyKey = "scale-\(index)"
      return request
    }
    let first = try await queue.enqueue(request(0)).run
    for chunk in stride(from: 0, to: runs, by: every) {
      try await Self.generateChunk(queue, range: chunk..<min(runs, chunk + every), request: request)
      await progress(min(runs, chunk + every))
    }
    for index in 0..<active { _ = try await queue.enqueue(request(runs + index)) }
    return first
  }

  static func generateChunk(
    _ queue: RunQueue, range: Range<Int>, request: @escaping @Sendable (Int) -> EnqueueRequest
  ) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
      for worker in 0..<32 {
        group.addTask {
          for index in stride(from: range.lowerBound + worker, to: range.upperBound, by: 32) {
            if index > 0 { _ = try await queue.enqueue(request(index)) }
            guard let claim = try await queue.claim(scheduler: "scale-\(worker)") else { continue }
            var events: [RunEvent.OneOf_Kind] = [.started(.init())]
            for step in ["prepare", "process"] {
              events.append(
                .attemptStarted(
                  .with {
                    $0.step = step
                    $0.attempt = 1
                  }))
              events.append(
                .attemptSucceeded(
                  .with {
                    $0.step = step
                    $0.attempt = 1
                    $0.result = Data(repeating: 0x61, count: 70)
                    $0.durationMicros = 800
                  }))
            }
            events.append(
              .completed(
                .with {
                  $0.result = Data(repeating: 0x62, count: 70)
                  $0.resultType = "gps.v1.Response"
                }))
            try await queue.report(claim.token, events)
          }
        }
      }
      try await group.waitForAll()
    }
  }
}

/// glibc's `malloc_trim` (not in the Glibc module): returns freed heap to the system, so resident
/// size measures what is in use.
@_silgen_name("malloc_trim") private func mallocTrim(_ pad: Int) -> Int32

/// This process's resident set size in bytes, after giving freed memory back: how the scale
/// benchmark and `gps log generate-history` show that memory stays flat.
package func residentBytes() -> Int {
  _ = mallocTrim(0)
  guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
  let fields = text.split(separator: " ")
  return (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
}
