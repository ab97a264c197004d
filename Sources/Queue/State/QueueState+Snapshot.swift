/// The snapshot encoding of ``QueueState``: a version, then every run in a fixed binary layout.
/// Snapshots are caches of the log, so the format may change with any version: a snapshot this
/// version cannot read is skipped and the log replayed.
extension QueueState {
  static let snapshotVersion: UInt32 = 1

  public func snapshotPayload() -> [UInt8] {
    var writer = SnapshotWriter()
    writer.bytes.reserveCapacity(runs.count * 256 + 64)
    writer.put(Self.snapshotVersion)
    writer.put(lastSequence)
    writer.put(lastTime.micros)
    writer.put(UInt64(runs.count))
    for run in runs.values.sorted(by: { $0.firstSequence < $1.firstSequence }) { writer.put(run) }
    return writer.bytes
  }

  /// The state in a snapshot payload, or nil when it is not one this version wrote.
  public init?(snapshotPayload bytes: [UInt8]) {
    var reader = SnapshotReader(bytes: bytes)
    guard let version: UInt32 = reader.get(), version == Self.snapshotVersion,
      let lastSequence: UInt64 = reader.get(), let lastTime: Int64 = reader.get(),
      let count: UInt64 = reader.get(), count <= UInt64(bytes.count)
    else { return nil }
    self.init()
    self.lastSequence = lastSequence
    self.lastTime = Timestamp(micros: lastTime)
    runs.reserveCapacity(Int(count))
    for _ in 0..<count {
      guard let run = reader.getRun() else { return nil }
      runs[run.id] = run
    }
    guard reader.isAtEnd else { return nil }
    rebuildDerived()
  }
}

struct SnapshotWriter {
  var bytes: [UInt8] = []

  mutating func put<T: FixedWidthInteger>(_ value: T) { bytes.appendLittleEndian(value) }

  mutating func put(_ value: [UInt8]) {
    put(UInt32(value.count))
    bytes.append(contentsOf: value)
  }

  mutating func put(_ value: String) {
    var value = value
    value.withUTF8 { utf8 in
      put(UInt32(utf8.count))
      bytes.append(contentsOf: utf8)
    }
  }

  mutating func put(_ value: Timestamp) { put(value.micros) }

  mutating func put(_ run: Run) {
    bytes.append(contentsOf: run.id.bytes)
    put(run.deployment)
    put(run.flow)
    put(run.parametersJSON)
    put(UInt32(run.parameters.count))
    for parameter in run.parameters {
      put(parameter.name)
      put(parameter.type)
      put(parameter.value)
    }
    put(run.idempotencyKey)
    put(UInt32(run.tags.count))
    for tag in run.tags { put(tag) }
    put(run.priority)
    put(run.crashPolicy.maxRequeues)
    put(run.crashPolicy.requeueDelay.micros)
    put(run.enqueuedBy)
    put(run.enqueuedAt)
    put(run.timeout.micros)
    put(UInt8(RunState.allCases.firstIndex(of: run.state)!))
    put(run.stateSince)
    put(run.stateMessage)
    put(run.scheduledStart)
    put(UInt8(run.lease == nil ? 0 : 1))
    if let lease = run.lease {
      put(lease.scheduler)
      put(lease.token)
      put(lease.expiresAt)
    }
    put(UInt8(run.orphaned ? 1 : 0))
    put(run.startedAt?.micros ?? Int64.min)
    put(run.step)
    put(run.stepAttempt)
    put(run.attempts)
    put(run.eventCount)
    put(run.firstSequence)
    put(run.lastSequence)
    put(run.claims)
    put(run.requeues)
    put(run.userRetries)
    put(run.result)
    put(run.resultType)
  }
}

struct SnapshotReader {
  let bytes: [UInt8]
  var offset = 0

  var isAtEnd: Bool { offset == bytes.count }

  mutating func get<T: FixedWidthInteger>() -> T? {
    let size = MemoryLayout<T>.size
    guard offset + size <= bytes.count else { return nil }
    defer { offset += size }
    return bytes.withUnsafeBytes { $0.loadLittleEndian(T.self, at: offset) }
  }

  mutating func getBytes() -> [UInt8]? {
    guard let count: UInt32 = get(), offset + Int(count) <= bytes.count else { return nil }
    defer { offset += Int(count) }
    return Array(bytes[offset..<offset + Int(count)])
  }

  mutating func getString() -> String? {
    guard let count: UInt32 = get(), offset + Int(count) <= bytes.count else { return nil }
    defer { offset += Int(count) }
    return String(decoding: bytes[offset..<offset + Int(count)], as: UTF8.self)
  }

  mutating func getTimestamp() -> Timestamp? { get().map { Timestamp(micros: $0) } }

  mutating func getRun() -> Run? {
    guard offset + 16 <= bytes.count, let id = RunID(bytes: bytes[offset..<offset + 16]) else { return nil }
    offset += 16
    guard let deployment = getString(), let flow = getString(), let parametersJSON = getString(),
      let parameterCount: UInt32 = get(), parameterCount <= UInt32(bytes.count - offset)
    else { return nil }
    var parameters: [RunParameter] = []
    for _ in 0..<parameterCount {
      guard let name = getString(), let type = getString(), let value = getBytes() else { return nil }
      parameters.append(RunParameter(name: name, type: type, value: value))
    }
    guard let idempotencyKey = getString(), let tagCount: UInt32 = get(), tagCount <= UInt32(bytes.count - offset)
    else { return nil }
    var tags: [String] = []
    for _ in 0..<tagCount {
      guard let tag = getString() else { return nil }
      tags.append(tag)
    }
    guard let priority: Int32 = get(), let maxRequeues: UInt32 = get(), let requeueDelay: Int64 = get(),
      let enqueuedBy = getString(), let enqueuedAt = getTimestamp(), let timeout: Int64 = get(),
      let stateIndex: UInt8 = get(), Int(stateIndex) < RunState.allCases.count,
      let stateSince = getTimestamp(), let stateMessage = getString(), let scheduledStart = getTimestamp(),
      let hasLease: UInt8 = get()
    else { return nil }
    var lease: Lease?
    if hasLease == 1 {
      guard let scheduler = getString(), let token: UInt64 = get(), let expiresAt = getTimestamp() else { return nil }
      lease = Lease(scheduler: scheduler, token: token, expiresAt: expiresAt)
    }
    guard let orphaned: UInt8 = get(), let startedAt: Int64 = get(), let step = getString(),
      let stepAttempt: UInt32 = get(), let attempts: UInt32 = get(), let eventCount: UInt32 = get(),
      let firstSequence: UInt64 = get(), let lastSequence: UInt64 = get(), let claims: UInt32 = get(),
      let requeues: UInt32 = get(), let userRetries: UInt32 = get(), let result = getBytes(),
      let resultType = getString()
    else { return nil }
    return Run(
      id: id, deployment: deployment, flow: flow, parametersJSON: parametersJSON, parameters: parameters,
      idempotencyKey: idempotencyKey, tags: tags, priority: priority,
      crashPolicy: CrashPolicy(maxRequeues: maxRequeues, requeueDelay: .microseconds(requeueDelay)),
      enqueuedBy: enqueuedBy, enqueuedAt: enqueuedAt, timeout: .microseconds(timeout),
      state: RunState.allCases[Int(stateIndex)], stateSince: stateSince, stateMessage: stateMessage,
      scheduledStart: scheduledStart, lease: lease, orphaned: orphaned == 1,
      startedAt: startedAt == Int64.min ? nil : Timestamp(micros: startedAt), step: step, stepAttempt: stepAttempt,
      attempts: attempts, eventCount: eventCount, firstSequence: firstSequence, lastSequence: lastSequence,
      claims: claims, requeues: requeues, userRetries: userRetries, result: result, resultType: resultType)
  }
}
