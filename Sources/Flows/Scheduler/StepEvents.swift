import Foundation
import GPSModel
import GRPCCore
import RPC
import SwiftProtobuf

/// The step events a scheduler records.
enum Events {
  static func attemptStarted(_ step: String, _ attempt: UInt32, digest: [UInt8]) -> RunEvent.OneOf_Kind {
    .attemptStarted(
      .with {
        $0.step = step
        $0.attempt = attempt
        $0.inputDigest = Data(digest)
      })
  }

  static func attemptSucceeded(
    _ step: String, _ attempt: UInt32, result: [UInt8], duration: Duration, cached: Bool
  ) -> RunEvent.OneOf_Kind {
    .attemptSucceeded(
      .with {
        $0.step = step
        $0.attempt = attempt
        $0.result = Data(result)
        $0.durationMicros = duration.micros
        $0.cached = cached
      })
  }

  static func attemptFailed(
    _ step: String, _ attempt: UInt32, _ error: RPCError, retryable: Bool, duration: Duration
  ) -> RunEvent.OneOf_Kind {
    .attemptFailed(
      .with {
        $0.step = step
        $0.attempt = attempt
        $0.statusCode = Int32(error.code.rawValue)
        $0.statusName = error.code.canonicalName
        $0.message = error.message
        $0.retryable = retryable
        $0.durationMicros = duration.micros
      })
  }
}
