import GRPCNIOTransportHTTP2
import Logging
import NIOCore
import Synchronization

/// How many connections the control API holds at once, in all and per remote host, and how long
/// a new one may take to start its first call. Each connection holds a file descriptor: without a
/// bound, idle connections (20,000 TLS handshakes never finished) took every descriptor and a CLI
/// enqueue waited 30 s for one.
public struct ConnectionLimits: Sendable, Hashable {
  /// Beyond this many, the server stops accepting until one closes (new ones wait in the kernel's
  /// queue rather than fail).
  public var total: Int
  /// A host (an IP address) with this many open has its next ones closed at once (unless this is
  /// the total: then they wait like any other).
  public var perHost: Int
  /// A connection that has not started a call (TLS and HTTP/2 handshakes, then its first stream)
  /// within this time is closed.
  public var handshakeTimeout: Duration
  /// A connection without calls for this long is closed gracefully (GOAWAY); clients reconnect.
  public var idleTimeout: Duration

  public init(
    total: Int, perHost: Int, handshakeTimeout: Duration = .seconds(10), idleTimeout: Duration = .seconds(300)
  ) {
    self.total = max(1, total)
    self.perHost = max(1, min(perHost, total))
    self.handshakeTimeout = handshakeTimeout
    self.idleTimeout = idleTimeout
  }

  /// Limits for a process that may hold `fileLimit` descriptors: all but 256 of them (kept for the
  /// log, the index and the web), at most 100,000; a host gets a quarter.
  public init(fileLimit: Int) {
    let total = min(100_000, max(16, fileLimit - 256))
    self.init(total: total, perHost: max(4, total / 4))
  }
}

/// Applies ``ConnectionLimits`` to a gRPC server's listener and connections (through the
/// transport's channel callbacks).
final class ConnectionGate: Sendable {
  let limits: ConnectionLimits
  let logger: Logger
  private struct Counts {
    var total = 0
    var byHost: [String: Int] = [:]
    /// The listener, when it stopped reading because the limit was reached: read again on a close.
    var paused: (@Sendable () -> Void)?
  }
  private let counts = Mutex(Counts())

  init(limits: ConnectionLimits, logger: Logger) {
    self.limits = limits
    self.logger = logger
  }

  /// Connections open now.
  var open: Int { counts.withLock { $0.total } }

  var callbacks: HTTP2ServerTransport.Config.ChannelDebuggingCallbacks {
    .init(
      onBindTCPListener: { [self] channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(ListenerHandler(gate: self), position: .first)
          // One accept per read, so that each is counted before the next is decided.
          try channel.syncOptions?.setOption(.maxMessagesPerRead, value: 1)
        }
      },
      onAcceptTCPConnection: { [self] channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(ConnectionHandler(gate: self), position: .first)
        }
      },
      onAcceptHTTP2Stream: { stream in
        // The connection started a call: its handshakes are done.
        guard let parent = stream.parent else { return stream.eventLoop.makeSucceededVoidFuture() }
        return parent.eventLoop.submit {
          if let handler = try? parent.pipeline.syncOperations.handler(type: ConnectionHandler.self) {
            handler.started()
          }
        }
      })
  }

  /// Whether the listener may accept another connection now; when not, `resume` is called once one
  /// closes.
  func mayAccept(resume: @escaping @Sendable () -> Void) -> Bool {
    counts.withLock { counts in
      guard counts.total >= limits.total else { return true }
      counts.paused = resume
      return false
    }
  }

  /// Counts a connection the listener accepted.
  func accepted(_ channel: any Channel) {
    counts.withLock { $0.total += 1 }
    channel.closeFuture.whenComplete { [self] _ in
      let resume = counts.withLock { counts -> (@Sendable () -> Void)? in
        counts.total -= 1
        guard counts.total < limits.total, let resume = counts.paused else { return nil }
        counts.paused = nil
        return resume
      }
      resume?()
    }
  }

  /// Counts an active connection from `host`; false (and not counted) when the host has its
  /// share. A host's share as large as the total is no share: the total's wait applies.
  func opened(from host: String) -> Bool {
    counts.withLock { counts in
      guard limits.perHost >= limits.total || counts.byHost[host, default: 0] < limits.perHost else { return false }
      counts.byHost[host, default: 0] += 1
      return true
    }
  }

  func closed(from host: String) {
    counts.withLock { counts in
      counts.byHost[host, default: 1] -= 1
      if counts.byHost[host] == 0 { counts.byHost[host] = nil }
    }
  }
}

/// On the listening channel: stops reading new connections while the server holds its limit.
private final class ListenerHandler: ChannelDuplexHandler, RemovableChannelHandler {
  typealias InboundIn = any Channel
  typealias OutboundIn = Never
  let gate: ConnectionGate
  private var warned = false

  init(gate: ConnectionGate) { self.gate = gate }

  /// A connection accepted: counted here, where the next read is decided, so the count is never
  /// behind the decision.
  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    gate.accepted(unwrapInboundIn(data))
    context.fireChannelRead(data)
  }

  func read(context: ChannelHandlerContext) {
    let loop = context.eventLoop
    let bound = NIOLoopBound(context, eventLoop: loop)
    let accepting = gate.mayAccept { loop.execute { bound.value.read() } }
    guard accepting else {
      if !warned {
        warned = true
        gate.logger.warning(
          "the control API holds its limit of \(gate.limits.total) connections: new ones wait until one closes (--max-connections)"
        )
      }
      return
    }
    context.read()
  }
}

/// On each accepted connection: counts it, closes it when its host holds its share, and closes it
/// when it has not started a call within the handshake timeout.
private final class ConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = NIOAny
  let gate: ConnectionGate
  private var host = ""
  private var admitted = false
  private var deadline: Scheduled<Void>?

  init(gate: ConnectionGate) { self.gate = gate }

  func handlerAdded(context: ChannelHandlerContext) {
    // Added while the connection is set up, before it is active: counted once it is.
    if context.channel.isActive { admit(context) }
  }

  func channelActive(context: ChannelHandlerContext) {
    admit(context)
    context.fireChannelActive()
  }

  private func admit(_ context: ChannelHandlerContext) {
    guard !admitted else { return }
    admitted = true
    host = context.channel.remoteAddress?.ipAddress ?? "unknown"
    guard gate.opened(from: host) else {
      gate.logger.notice(
        "closed a connection from \(host): it holds its limit of \(gate.limits.perHost) connections (--max-connections-per-host)"
      )
      context.close(promise: nil)
      return
    }
    let gate = self.gate
    let host = self.host
    context.channel.closeFuture.whenComplete { _ in gate.closed(from: host) }
    let channel = context.channel
    deadline = context.eventLoop.scheduleTask(in: TimeAmount(gate.limits.handshakeTimeout)) {
      channel.close(promise: nil)
    }
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    deadline?.cancel()
  }

  /// The connection's first call began: no handshake deadline any more.
  func started() {
    deadline?.cancel()
    deadline = nil
  }
}
