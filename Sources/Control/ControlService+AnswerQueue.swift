import Flows
import Foundation
import GPSModel
import GRPCCore
import Queue
import RPC
import SwiftProtobuf
import Synchronization

extension ControlService {
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
