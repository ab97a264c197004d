package import GPSModel
package import GRPCCore
import Queue
import RPC
import SwiftProtobuf
import Synchronization

extension ControlService {
  package func enqueueStream(
    request: RPCAsyncSequence<Gps_V1_EnqueueRunRequest, any Error>, response: RPCWriter<Gps_V1_EnqueueRunResponse>,
    context: ServerContext
  ) async throws {
    // Requests are validated and submitted as they arrive; their answers go back in order, each
    // once its run is durable, so a client's pipelined enqueues share group commits. Answers that
    // are ready together are written together.
    let answers = AnswerQueue()
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask {
        while let batch = await answers.next() {
          var messages: [Gps_V1_EnqueueRunResponse] = []
          for next in batch {
            switch next {
            case .refused(let error):
              messages.append(
                .with {
                  $0.errorCode = error.code.canonicalName
                  $0.errorMessage = error.message
                })
            case .submitted(let result):
              let sequence = result.run.lastSequence
              if self.queue.durableSequence < sequence {
                // Send what is ready before waiting for the disk.
                if !messages.isEmpty { try await response.write(contentsOf: messages) }
                messages = []
                await self.queue.waitUntilDurable(sequence)
                guard self.queue.durableSequence >= sequence else {
                  throw RPCError(
                    code: .unavailable,
                    message:
                      "the queue stopped before run \(result.run.id) was durable; enqueue it again (with an idempotency key)"
                  )
                }
              }
              // Only what a bulk enqueuer needs (not the full RunInfo that Enqueue answers with):
              // every byte here is paid for by each of tens of thousands of answers a second.
              messages.append(
                .with {
                  $0.run = .with {
                    $0.id = result.run.id.description
                    $0.deployment = result.run.deployment
                    $0.state = result.run.state.rawValue
                    $0.firstSequence = result.run.firstSequence
                    $0.lastSequence = result.run.lastSequence
                  }
                  $0.created = result.created
                })
            }
          }
          if !messages.isEmpty { try await response.write(contentsOf: messages) }
        }
      }
      defer { answers.finish() }
      let caller = Principal.caller(context)
      for try await enqueue in request {
        do {
          answers.append(.submitted(try engine.submit(enqueue, by: caller)))
        } catch let error as any RPCErrorConvertible where error.rpcErrorCode != .unavailable {
          answers.append(.refused(RPCError(error)))
        }
      }
      answers.finish()
      try await group.waitForAll()
    }
  }

  /// The answers of one EnqueueStream, in order; the writer takes all that are there at once.
  final class AnswerQueue: Sendable {
    private let state = Mutex<(answers: [StreamAnswer], finished: Bool)>(([], false))
    private let signal = WakeSignal()

    func append(_ answer: StreamAnswer) {
      state.withLock { $0.answers.append(answer) }
      signal.signal()
    }

    func finish() {
      state.withLock { $0.finished = true }
      signal.signal()
    }

    /// Every answer queued so far (waiting for one if there is none), or nil once finished and empty.
    func next() async -> [StreamAnswer]? {
      while true {
        let (batch, finished) = state.withLock { state in
          defer { state.answers = [] }
          return (state.answers, state.finished)
        }
        if !batch.isEmpty { return batch }
        if finished || Task.isCancelled { return nil }
        await signal.wait()
      }
    }
  }

  enum StreamAnswer: Sendable {
    case submitted(EnqueueResult)
    case refused(RPCError)
  }
}
