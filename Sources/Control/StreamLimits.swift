package import GRPCCore
import Synchronization

/// How many following streams (watches, followed history, workers' work signals, the web's
/// server-sent events) may be open at once, in all and per principal: each holds a connection and
/// a file descriptor for as long as it lasts, so without a bound one caller could open them until
/// the server ran out of descriptors for everything else.
public final class StreamLimits: Sendable {
  public let total: Int
  public let perPrincipal: Int
  private let open = Mutex<(total: Int, byPrincipal: [String: Int])>((0, [:]))

  public init(total: Int, perPrincipal: Int) {
    self.total = max(1, total)
    self.perPrincipal = max(1, min(perPrincipal, total))
  }

  /// Limits for a process that may hold `fileLimit` descriptors: half of them for streams (the
  /// rest for the log, the index, the web and new connections), at most 10,000; a principal gets
  /// a quarter of those.
  public convenience init(fileLimit: Int) {
    let total = min(10_000, max(16, fileLimit / 2))
    self.init(total: total, perPrincipal: max(8, total / 4))
  }

  /// Why a stream of `principal` may not open now (nil: it may), without taking a place.
  package func refusal(for principal: String) -> RPCError? {
    open.withLock { open in Self.refusal(open, principal: principal, total: total, perPrincipal: perPrincipal) }
  }

  /// Takes a place for a stream of `principal`, or refuses with RESOURCE_EXHAUSTED naming the limit.
  package func acquire(_ principal: String) throws(RPCError) {
    let refused = open.withLock { open -> RPCError? in
      if let refusal = Self.refusal(open, principal: principal, total: total, perPrincipal: perPrincipal) {
        return refusal
      }
      open.total += 1
      open.byPrincipal[principal, default: 0] += 1
      return nil
    }
    if let refused { throw refused }
  }

  package func release(_ principal: String) {
    open.withLock { open in
      open.total -= 1
      open.byPrincipal[principal, default: 1] -= 1
      if open.byPrincipal[principal] == 0 { open.byPrincipal[principal] = nil }
    }
  }

  /// Streams open now, in all.
  public var count: Int { open.withLock { $0.total } }

  private static func refusal(
    _ open: (total: Int, byPrincipal: [String: Int]), principal: String, total: Int, perPrincipal: Int
  ) -> RPCError? {
    if open.total >= total {
      return RPCError(
        code: .resourceExhausted,
        message:
          "the server has \(open.total) streams open, its limit (--max-streams \(total)); try again when one ends")
    }
    if open.byPrincipal[principal, default: 0] >= perPrincipal {
      return RPCError(
        code: .resourceExhausted,
        message:
          "\(principal.prefix(100)) has \(perPrincipal) streams open, the limit per caller; close one, or try again when one ends"
      )
    }
    return nil
  }
}
