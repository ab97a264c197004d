import Dispatch
import GPSModel
import SwiftProtobuf
import Synchronization

/// The snapshot encoding of ``QueueState``: a version, a table of the distinct strings, then every
/// run in a fixed binary layout that names strings by their index in the table. Runs share most
/// strings (deployment, flow, parameter types, step names), so the table keeps snapshots small,
/// and a loaded state holds each such string once. Runs are written in chunks whose sizes head the
/// runs, so the chunks decode in parallel.
///
/// Snapshots are caches of the log, so the format may change with any version: a snapshot this
/// version cannot read is skipped and the log replayed.
extension QueueState {
  static let snapshotVersion: UInt32 = 7
  /// The snapshot payload; runs are written `runsPerChunk` at a time, the unit of parallel decoding.
  package func snapshotPayload(runsPerChunk: Int = 32_768) -> [UInt8] {
    var body = SnapshotWriter()
    body.bytes.reserveCapacity(runs.count * 160 + 64)
    var chunks: [(runs: UInt32, bytes: UInt64)] = []
    for start in stride(from: 0, to: runs.count, by: runsPerChunk) {
      let before = body.bytes.count
      let end = min(runs.count, start + runsPerChunk)
      for run in runs.values[start..<end] { body.put(run) }
      chunks.append((UInt32(end - start), UInt64(body.bytes.count - before)))
    }
    var writer = SnapshotWriter()
    writer.bytes.reserveCapacity(
      body.bytes.count + body.strings.reduce(64 + chunks.count * 12) { $0 + 4 + $1.utf8.count })
    writer.put(Self.snapshotVersion)
    writer.put(lastSequence)
    writer.put(lastTime.micros)
    writer.put(UInt64(runs.count))
    writer.put(UInt32(body.strings.count))
    for string in body.strings { writer.putRaw(string) }
    writer.putDeployments(deployments, handOvers: handOvers)
    writer.put(UInt32(chunks.count))
    for chunk in chunks {
      writer.put(chunk.runs)
      writer.put(chunk.bytes)
    }
    writer.bytes.append(contentsOf: body.bytes)
    return writer.bytes
  }

  /// The state in a snapshot payload, or nil when it is not one this version wrote.
  package init?(snapshotPayload bytes: [UInt8]) {
    var reader = SnapshotReader(bytes: bytes)
    guard let version: UInt32 = reader.get(), version == Self.snapshotVersion,
      let lastSequence: UInt64 = reader.get(), let lastTime: Int64 = reader.get(),
      let count: UInt64 = reader.get(), count <= UInt64(bytes.count),
      let stringCount: UInt32 = reader.get(), stringCount <= UInt32(bytes.count)
    else { return nil }
    reader.strings.reserveCapacity(Int(stringCount))
    for _ in 0..<stringCount {
      guard let string = reader.getRawString() else { return nil }
      reader.strings.append(string)
    }
    guard let (deployments, handOvers) = reader.getDeployments(), let chunkCount: UInt32 = reader.get(),
      Int(chunkCount) * 12 <= bytes.count - reader.offset
    else {
      return nil
    }
    var chunks: [(firstRun: Int, runs: Int, offset: Int, end: Int)] = []
    var offset = reader.offset + Int(chunkCount) * 12
    var firstRun = 0
    for _ in 0..<chunkCount {
      guard let runCount: UInt32 = reader.get(), let length: UInt64 = reader.get(),
        length <= UInt64(bytes.count - offset)
      else { return nil }
      chunks.append((firstRun, Int(runCount), offset, offset + Int(length)))
      firstRun += Int(runCount)
      offset += Int(length)
    }
    guard firstRun == Int(count), offset == bytes.count else { return nil }

    let strings = reader.strings
    let chunkTable = chunks
    let failed = Atomic(false)
    let values = [Run](unsafeUninitializedCapacity: Int(count)) { buffer, initialized in
      nonisolated(unsafe) let base = buffer.baseAddress
      let decoded = UnsafeMutableBufferPointer<Int>.allocate(capacity: chunkTable.count)
      decoded.initialize(repeating: 0)
      nonisolated(unsafe) let done = decoded
      defer { decoded.deallocate() }
      DispatchQueue.concurrentPerform(iterations: chunkTable.count) { index in
        let chunk = chunkTable[index]
        var reader = SnapshotReader(bytes: bytes, offset: chunk.offset, strings: strings)
        for position in chunk.firstRun..<(chunk.firstRun + chunk.runs) {
          guard let run = reader.getRun(), reader.offset <= chunk.end else {
            failed.store(true, ordering: .relaxed)
            return
          }
          (base! + position).initialize(to: run)
          done[index] += 1
        }
        if reader.offset != chunk.end { failed.store(true, ordering: .relaxed) }
      }
      if failed.load(ordering: .relaxed) {
        for (index, chunk) in chunkTable.enumerated() { (base! + chunk.firstRun).deinitialize(count: done[index]) }
        initialized = 0
      } else {
        initialized = Int(count)
      }
    }
    guard !failed.load(ordering: .relaxed) else { return nil }
    self.init()
    self.lastSequence = lastSequence
    self.lastTime = Timestamp(micros: lastTime)
    // The id index and the derived tables are independent: build them side by side.
    var table = RunTable()
    var derived = QueueState()
    withUnsafeMutablePointer(to: &table) { table in
      withUnsafeMutablePointer(to: &derived) { derived in
        nonisolated(unsafe) let table = table
        nonisolated(unsafe) let derived = derived
        DispatchQueue.concurrentPerform(iterations: 2) { job in
          if job == 0 {
            table.pointee = RunTable(values)
          } else {
            derived.pointee.rebuildDerived(from: values)
          }
        }
      }
    }
    runs = table
    self.deployments = deployments
    self.handOvers = handOvers
    idempotencyKeys = derived.idempotencyKeys
    slotsByDeployment = derived.slotsByDeployment
    slotsByTag = derived.slotsByTag
    activeByDeployment = derived.activeByDeployment
    counts = derived.counts
  }
}

struct SnapshotWriter {
  var bytes: [UInt8] = []
  /// The string table: each distinct string once, named by its index.
  var strings: [String] = []
  var indexes: [String: UInt32] = [:]

  mutating func put<T: FixedWidthInteger>(_ value: T) { bytes.appendLittleEndian(value) }

  mutating func put(_ value: [UInt8]) {
    put(UInt32(value.count))
    bytes.append(contentsOf: value)
  }

  /// A string, as its index in the table.
  mutating func put(_ value: String) {
    if let index = indexes[value] {
      put(index)
    } else {
      let index = UInt32(strings.count)
      strings.append(value)
      indexes[value] = index
      put(index)
    }
  }

  /// A string's bytes, length first (for the table itself).
  mutating func putRaw(_ value: String) {
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
    put(run.deploymentVersion)
    put(UInt8(run.state.index))
    put(run.stateSince)
    put(run.stateMessage)
    put(run.scheduledStart)
    put(UInt8(run.lease == nil ? 0 : 1))
    if let lease = run.lease {
      put(lease.scheduler)
      put(lease.token)
      put(lease.expiresAt)
      put(lease.claim)
    }
    put(UInt8((run.orphaned ? 1 : 0) | (run.attemptOpen ? 2 : 0)))
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

extension SnapshotWriter {
  /// Every version of every deployment: each as its registration event, with its time and
  /// sequence; then each hand-over as its event, with its time and sequence.
  mutating func putDeployments(
    _ deployments: [String: [DeploymentVersion]], handOvers: [String: DeploymentHandOver]
  ) {
    let versions = deployments.keys.sorted().flatMap { deployments[$0]! }
    put(UInt32(versions.count))
    for version in versions {
      var event = Gps_V1_DeploymentRegistered()
      event.definition = version.definition
      event.version = version.version
      event.worker = version.worker
      event.registeredBy = version.registeredBy
      // A definition in the state was decoded from the log, so it encodes.
      put((try? event.serializedBytes()) ?? [])
      put(version.registeredAt)
      put(version.sequence)
    }
    put(UInt32(handOvers.count))
    for (deployment, handOver) in handOvers.sorted(by: { $0.key < $1.key }) {
      let event = Gps_V1_DeploymentHandedOver.with {
        $0.deployment = deployment
        $0.to = handOver.to
        $0.handedOverBy = handOver.by
        $0.note = handOver.note
      }
      put((try? event.serializedBytes()) ?? [])
      put(handOver.at)
      put(handOver.sequence)
    }
  }
}

extension SnapshotReader {
  mutating func getDeployments() -> (
    deployments: [String: [DeploymentVersion]], handOvers: [String: DeploymentHandOver]
  )? {
    guard let count: UInt32 = get(), count <= UInt32(bytes.count - offset) else { return nil }
    var deployments: [String: [DeploymentVersion]] = [:]
    for _ in 0..<count {
      guard let bytes = getBytes(), let event = try? Gps_V1_DeploymentRegistered(serializedBytes: bytes),
        let time = getTimestamp(), let sequence: UInt64 = get(),
        event.version == (deployments[event.definition.name]?.count ?? 0) + 1
      else { return nil }
      deployments[event.definition.name, default: []].append(
        DeploymentVersion(
          definition: event.definition, version: event.version, registeredAt: time, worker: event.worker,
          registeredBy: event.registeredBy, sequence: sequence))
    }
    guard let handOverCount: UInt32 = get(), handOverCount <= UInt32(bytes.count - offset) else { return nil }
    var handOvers: [String: DeploymentHandOver] = [:]
    for _ in 0..<handOverCount {
      guard let bytes = getBytes(), let event = try? Gps_V1_DeploymentHandedOver(serializedBytes: bytes),
        let time = getTimestamp(), let sequence: UInt64 = get(), deployments[event.deployment] != nil
      else { return nil }
      handOvers[event.deployment] = DeploymentHandOver(
        to: event.to, by: event.handedOverBy, note: event.note, at: time, sequence: sequence)
    }
    return (deployments, handOvers)
  }
}

struct SnapshotReader {
  let bytes: [UInt8]
  var offset = 0
  var strings: [String] = []
  var singleTags: [UInt32: [String]] = [:]

  init(bytes: [UInt8], offset: Int = 0, strings: [String] = []) {
    self.bytes = bytes
    self.offset = offset
    self.strings = strings
  }

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

  mutating func getRawString() -> String? {
    guard let count: UInt32 = get(), offset + Int(count) <= bytes.count else { return nil }
    defer { offset += Int(count) }
    return String(decoding: bytes[offset..<offset + Int(count)], as: UTF8.self)
  }

  /// A string named by its index in the table.
  mutating func getString() -> String? {
    guard let index: UInt32 = get(), Int(index) < strings.count else { return nil }
    return strings[Int(index)]
  }

  mutating func getTimestamp() -> Timestamp? { get().map { Timestamp(micros: $0) } }

  mutating func getRun() -> Run? {
    guard offset + 16 <= bytes.count, let id = RunID(bytes: bytes[offset..<offset + 16]) else { return nil }
    offset += 16
    guard let deployment = getString(), let flow = getString(), let parametersJSON = getString(),
      let parameterCount: UInt32 = get(), parameterCount <= UInt32(bytes.count - offset)
    else { return nil }
    var parameters: [RunParameter] = []
    parameters.reserveCapacity(Int(parameterCount))
    for _ in 0..<parameterCount {
      guard let name = getString(), let type = getString(), let value = getBytes() else { return nil }
      parameters.append(RunParameter(name: name, type: type, value: value))
    }
    guard let idempotencyKey = getString(), let tagCount: UInt32 = get(), tagCount <= UInt32(bytes.count - offset)
    else { return nil }
    var tags: [String] = []
    if tagCount == 1 {
      // Runs share a few tag sets; one array per tag is enough for the single-tag case.
      guard let index: UInt32 = get(), Int(index) < strings.count else { return nil }
      if let shared = singleTags[index] {
        tags = shared
      } else {
        tags = [strings[Int(index)]]
        singleTags[index] = tags
      }
    } else {
      tags.reserveCapacity(Int(tagCount))
      for _ in 0..<tagCount {
        guard let tag = getString() else { return nil }
        tags.append(tag)
      }
    }
    guard let priority: Int32 = get(), let maxRequeues: UInt32 = get(), let requeueDelay: Int64 = get(),
      let enqueuedBy = getString(), let enqueuedAt = getTimestamp(), let timeout: Int64 = get(),
      let deploymentVersion: UInt32 = get(), let stateIndex: UInt8 = get(), Int(stateIndex) < RunState.byIndex.count,
      let stateSince = getTimestamp(), let stateMessage = getString(), let scheduledStart = getTimestamp(),
      let hasLease: UInt8 = get()
    else { return nil }
    var lease: Lease?
    if hasLease == 1 {
      guard let scheduler = getString(), let token: UInt64 = get(), let expiresAt = getTimestamp(),
        let claim = getString()
      else { return nil }
      lease = Lease(scheduler: scheduler, token: token, expiresAt: expiresAt, claim: claim)
    }
    guard let orphaned: UInt8 = get(), let startedAt: Int64 = get(), let step = getString(),
      let stepAttempt: UInt32 = get(), let attempts: UInt32 = get(), let eventCount: UInt32 = get(),
      let firstSequence: UInt64 = get(), let lastSequence: UInt64 = get(), let claims: UInt32 = get(),
      let requeues: UInt32 = get(), let userRetries: UInt32 = get(), let result = getBytes(),
      let resultType = getString()
    else { return nil }
    let spec = RunSpec(
      deployment: deployment, flow: flow, parametersJSON: parametersJSON, parameters: parameters,
      idempotencyKey: idempotencyKey, tags: tags, priority: priority,
      crashPolicy: CrashPolicy(maxRequeues: maxRequeues, requeueDelay: .microseconds(requeueDelay)),
      enqueuedBy: enqueuedBy, enqueuedAt: enqueuedAt, timeout: .microseconds(timeout),
      deploymentVersion: deploymentVersion)
    return Run(
      id: id, spec: spec, state: RunState.byIndex[Int(stateIndex)], stateSince: stateSince,
      stateMessage: stateMessage, scheduledStart: scheduledStart, lease: lease, orphaned: orphaned & 1 != 0,
      startedAt: startedAt == Int64.min ? nil : Timestamp(micros: startedAt), step: step, stepAttempt: stepAttempt,
      attemptOpen: orphaned & 2 != 0,
      attempts: attempts, eventCount: eventCount, claims: claims, requeues: requeues, userRetries: userRetries,
      firstSequence: firstSequence, lastSequence: lastSequence, result: result, resultType: resultType)
  }
}
