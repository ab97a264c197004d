package import GPSModel

/// What a terminal run's row of the index holds in columns of its own (for lookups and
/// listing), so its record leaves them out: each is stored once.
struct RunColumns {
  var id: RunID
  var state: RunState
  var deployment: String
  var enqueuedAt: Timestamp
  var idempotencyKey: String
  var firstSequence: UInt64
}

/// A run as one record of the run index: self-contained but for ``RunColumns`` when its row
/// has them, and compact. Integers are varints (signed ones zigzagged), times after the enqueue
/// time are offsets from it, the last sequence is an offset from the first, free text is inline
/// with its length first, and the strings that repeat in every run of a deployment (its name,
/// the flow, parameter names and types, who enqueued, the step, the result's type, the
/// scheduler) are numbers of the index's `names` table: 0 is the empty string.
extension Run {
  static let indexRecordVersion: UInt8 = 3

  /// The record; `columns`: the row holds ``RunColumns`` (left out here). `name` gives a string's
  /// number in the names table.
  package func indexRecord(columns: Bool, name: (String) throws(QueueError) -> UInt64) throws(QueueError) -> [UInt8] {
    var writer = RecordWriter()
    writer.bytes.reserveCapacity(
      64 + parametersJSON.utf8.count + result.count + stateMessage.utf8.count + tags.count * 16
        + parameters.reduce(0) { $0 + $1.value.count + 4 })
    writer.bytes.append(Self.indexRecordVersion)
    if !columns {
      writer.bytes.append(contentsOf: id.bytes)
      writer.put(try name(deployment))
      writer.put(idempotencyKey)
      writer.put(signed: enqueuedAt.micros)
      writer.bytes.append(UInt8(state.index))
      writer.put(firstSequence)
    }
    writer.put(try name(flow))
    writer.put(parametersJSON)
    writer.put(UInt64(parameters.count))
    for parameter in parameters {
      writer.put(try name(parameter.name))
      writer.put(try name(parameter.type))
      writer.put(parameter.value)
    }
    writer.put(UInt64(tags.count))
    for tag in tags { writer.put(tag) }
    writer.put(signed: Int64(priority))
    writer.put(UInt64(crashPolicy.maxRequeues))
    writer.put(signed: crashPolicy.requeueDelay.micros)
    writer.put(try name(enqueuedBy))
    writer.put(signed: timeout.micros)
    writer.put(UInt64(deploymentVersion))
    let base = enqueuedAt.micros
    writer.put(signed: stateSince.micros &- base)
    writer.put(stateMessage)
    writer.put(signed: scheduledStart.micros &- base)
    let flags = (lease == nil ? 0 : 1) | (orphaned ? 2 : 0) | (attemptOpen ? 4 : 0) | (startedAt == nil ? 0 : 8)
    writer.bytes.append(UInt8(flags))
    if let lease {
      writer.put(try name(lease.scheduler))
      writer.put(lease.token)
      writer.put(signed: lease.expiresAt.micros &- base)
    }
    if let startedAt { writer.put(signed: startedAt.micros &- base) }
    writer.put(try name(step))
    writer.put(UInt64(stepAttempt))
    writer.put(UInt64(attempts))
    writer.put(UInt64(eventCount))
    writer.put(lastSequence &- firstSequence)
    writer.put(UInt64(claims))
    writer.put(UInt64(requeues))
    writer.put(UInt64(userRetries))
    writer.put(result)
    writer.put(try name(resultType))
    return writer.bytes
  }

  /// The run in a record of ``indexRecord(columns:name:)`` and its row's `columns` (nil: the
  /// record holds them), or nil when it does not decode or names a string `name` does not know.
  init?(indexRecord bytes: [UInt8], columns: RunColumns?, name: (UInt64) -> String?) {
    var reader = RecordReader(bytes: bytes)
    func named() -> String? { reader.varint().flatMap { $0 == 0 ? "" : name($0) } }
    guard reader.byte() == Self.indexRecordVersion else { return nil }
    let own: RunColumns
    if let columns {
      own = columns
    } else {
      guard let idBytes = reader.raw(16), let id = RunID(bytes: idBytes), let deployment = named(),
        let key = reader.string(), let enqueuedAt = reader.signed(), let stateIndex = reader.byte(),
        Int(stateIndex) < RunState.byIndex.count, let firstSequence = reader.varint()
      else { return nil }
      own = RunColumns(
        id: id, state: RunState.byIndex[Int(stateIndex)], deployment: deployment,
        enqueuedAt: Timestamp(micros: enqueuedAt), idempotencyKey: key, firstSequence: firstSequence)
    }
    guard let flow = named(), let parametersJSON = reader.string(), let parameterCount = reader.varint(),
      parameterCount <= UInt64(bytes.count)
    else { return nil }
    var parameters: [RunParameter] = []
    for _ in 0..<parameterCount {
      guard let name = named(), let type = named(), let value = reader.blob() else { return nil }
      parameters.append(RunParameter(name: name, type: type, value: value))
    }
    guard let tagCount = reader.varint(), tagCount <= UInt64(bytes.count) else { return nil }
    var tags: [String] = []
    for _ in 0..<tagCount {
      guard let tag = reader.string() else { return nil }
      tags.append(tag)
    }
    let enqueuedAt = own.enqueuedAt.micros
    guard let priority = reader.signed(), let maxRequeues = reader.varint(), let requeueDelay = reader.signed(),
      let enqueuedBy = named(), let timeout = reader.signed(), let deploymentVersion = reader.varint(),
      let stateSince = reader.signed(), let stateMessage = reader.string(), let scheduledStart = reader.signed(),
      let flags = reader.byte()
    else { return nil }
    var lease: Lease?
    if flags & 1 != 0 {
      guard let scheduler = named(), let token = reader.varint(), let expiresAt = reader.signed() else {
        return nil
      }
      lease = Lease(scheduler: scheduler, token: token, expiresAt: Timestamp(micros: enqueuedAt &+ expiresAt))
    }
    var startedAt: Timestamp?
    if flags & 8 != 0 {
      guard let started = reader.signed() else { return nil }
      startedAt = Timestamp(micros: enqueuedAt &+ started)
    }
    guard let step = named(), let stepAttempt = reader.varint(), let attempts = reader.varint(),
      let eventCount = reader.varint(), let lastOffset = reader.varint(), let claims = reader.varint(),
      let requeues = reader.varint(), let userRetries = reader.varint(), let result = reader.blob(),
      let resultType = named(), reader.isAtEnd, let priority32 = Int32(exactly: priority),
      let maxRequeues32 = UInt32(exactly: maxRequeues), let version32 = UInt32(exactly: deploymentVersion)
    else { return nil }
    let spec = RunSpec(
      deployment: own.deployment, flow: flow, parametersJSON: parametersJSON, parameters: parameters,
      idempotencyKey: own.idempotencyKey, tags: tags, priority: priority32,
      crashPolicy: CrashPolicy(maxRequeues: maxRequeues32, requeueDelay: .microseconds(requeueDelay)),
      enqueuedBy: enqueuedBy, enqueuedAt: own.enqueuedAt, timeout: .microseconds(timeout),
      deploymentVersion: version32)
    self.init(
      id: own.id, spec: spec, state: own.state, stateSince: Timestamp(micros: enqueuedAt &+ stateSince),
      stateMessage: stateMessage, scheduledStart: Timestamp(micros: enqueuedAt &+ scheduledStart), lease: lease,
      orphaned: flags & 2 != 0, startedAt: startedAt, step: step, stepAttempt: UInt32(truncatingIfNeeded: stepAttempt),
      attemptOpen: flags & 4 != 0, attempts: UInt32(truncatingIfNeeded: attempts),
      eventCount: UInt32(truncatingIfNeeded: eventCount), claims: UInt32(truncatingIfNeeded: claims),
      requeues: UInt32(truncatingIfNeeded: requeues), userRetries: UInt32(truncatingIfNeeded: userRetries),
      firstSequence: own.firstSequence, lastSequence: own.firstSequence &+ lastOffset, result: result,
      resultType: resultType)
  }
}

/// Varints and length-prefixed bytes.
struct RecordWriter {
  var bytes: [UInt8] = []

  mutating func put(_ value: UInt64) {
    var value = value
    while value >= 0x80 {
      bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
      value >>= 7
    }
    bytes.append(UInt8(value))
  }

  mutating func put(signed value: Int64) { put(UInt64(bitPattern: (value << 1) ^ (value >> 63))) }

  mutating func put(_ value: [UInt8]) {
    put(UInt64(value.count))
    bytes.append(contentsOf: value)
  }

  mutating func put(_ value: String) {
    var value = value
    value.withUTF8 { utf8 in
      put(UInt64(utf8.count))
      bytes.append(contentsOf: utf8)
    }
  }
}

struct RecordReader {
  let bytes: [UInt8]
  var offset = 0

  var isAtEnd: Bool { offset == bytes.count }

  mutating func byte() -> UInt8? {
    guard offset < bytes.count else { return nil }
    defer { offset += 1 }
    return bytes[offset]
  }

  mutating func varint() -> UInt64? {
    var value: UInt64 = 0
    var shift: UInt64 = 0
    while shift < 64, let byte = byte() {
      value |= UInt64(byte & 0x7f) << shift
      if byte & 0x80 == 0 { return value }
      shift += 7
    }
    return nil
  }

  mutating func signed() -> Int64? {
    guard let raw = varint() else { return nil }
    return Int64(bitPattern: raw >> 1) ^ -Int64(bitPattern: raw & 1)
  }

  mutating func raw(_ count: Int) -> ArraySlice<UInt8>? {
    guard count >= 0, count <= bytes.count - offset else { return nil }
    defer { offset += count }
    return bytes[offset..<offset + count]
  }

  mutating func blob() -> [UInt8]? {
    guard let count = varint(), count <= UInt64(bytes.count - offset) else { return nil }
    return raw(Int(count)).map(Array.init)
  }

  mutating func string() -> String? {
    guard let count = varint(), count <= UInt64(bytes.count - offset) else { return nil }
    return raw(Int(count)).map { String(decoding: $0, as: UTF8.self) }
  }
}
