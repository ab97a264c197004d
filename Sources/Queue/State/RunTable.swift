package import GPSModel

/// The runs of a queue, in enqueue order, found by id.
///
/// Runs are stored densely in an array with a small id → position index beside it, rather than as
/// dictionary values: a dictionary's buckets (a power of two, at most ¾ full) would hold the whole
/// run, which doubles the memory of a million runs.
package struct RunTable: Sendable, Hashable {
  /// Every run, in the order they were enqueued.
  package private(set) var values: [Run] = []
  private var positions: [RunID: Int32] = [:]
  /// What the runs of each block of ``blockSize`` positions are: a filter skips a block that
  /// cannot hold a match without reading its runs.
  private var blocks: [Block] = []

  /// Runs per block of ``blocks``.
  package static let blockSize = 1024

  /// A summary of the runs of one block.
  struct Block: Sendable {
    /// Runs in each state, by ``RunState/index``.
    var states = [UInt16](repeating: 0, count: RunState.allCases.count)
    var deployments: Set<String> = []
    var tags: Set<String> = []
    var earliest = Timestamp(micros: .max)
    var latest = Timestamp(micros: .min)

    mutating func add(_ run: Run) {
      states[run.state.index] += 1
      deployments.insert(run.deployment)
      tags.formUnion(run.tags)
      earliest = min(earliest, run.enqueuedAt)
      latest = max(latest, run.enqueuedAt)
    }
  }

  package init() {}

  /// A table of `runs`, which have distinct ids.
  init(_ runs: [Run]) {
    values = runs
    positions.reserveCapacity(runs.count)
    runs.withUnsafeBufferPointer { runs in
      for index in runs.indices {
        positions[runs[index].id] = Int32(index)
        if index % Self.blockSize == 0 { blocks.append(Block()) }
        blocks[index / Self.blockSize].add(runs[index])
      }
    }
  }

  /// False when no run of the block that holds `position` can match: none is in one of `states`
  /// (empty: any), of `deployment` (empty: any), has `tag` (empty: any), or was enqueued in
  /// `after..<before`.
  package func block(
    holding position: Int, mayMatch states: Set<RunState>, deployment: String, tag: String, after: Timestamp?,
    before: Timestamp?
  ) -> Bool {
    let block = blocks[position / Self.blockSize]
    if !states.isEmpty, !states.contains(where: { block.states[$0.index] > 0 }) { return false }
    if !deployment.isEmpty, !block.deployments.contains(deployment) { return false }
    if !tag.isEmpty, !block.tags.contains(tag) { return false }
    if let after, block.latest < after { return false }
    if let before, block.earliest >= before { return false }
    return true
  }

  /// Runs matching `query` enqueued at `upTo` or before, newest first, at most `limit`.
  package func runs(matching query: RunQuery, upTo: UInt64, limit: Int) -> [Run] {
    let runs = self
    var result: [Run] = []
    var position = runs.lastPosition(enqueuedAtOrBefore: upTo)
    var checkedBlock = -1
    let filtered = !query.isEmpty
    while position >= 0, result.count < limit {
      // A block none of whose runs can match is skipped whole.
      if filtered, position / RunTable.blockSize != checkedBlock {
        checkedBlock = position / RunTable.blockSize
        if !runs.block(
          holding: position, mayMatch: query.states, deployment: query.deployment, tag: query.tag,
          after: query.enqueuedAfter, before: query.enqueuedBefore)
        {
          position = checkedBlock * RunTable.blockSize - 1
          continue
        }
      }
      let run = runs.values[position]
      if query.matches(run) { result.append(run) }
      position -= 1
    }
    return result
  }

  package var count: Int { values.count }
  package var isEmpty: Bool { values.isEmpty }
  package var keys: [RunID] { values.map(\.id) }

  /// The position of the newest run enqueued at `sequence` or before, or -1.
  package func lastPosition(enqueuedAtOrBefore sequence: UInt64) -> Int {
    values.partitioningIndex { $0.firstSequence > sequence } - 1
  }

  package subscript(id: RunID) -> Run? {
    guard let position = positions[id] else { return nil }
    return values[Int(position)]
  }

  /// Adds a new run, or replaces the run with its id.
  mutating func put(_ run: Run) {
    if let position = positions[run.id] {
      moved(at: Int(position), from: values[Int(position)].state, to: run.state)
      values[Int(position)] = run
    } else if let last = values.last, last.firstSequence > run.firstSequence {
      // A retired run come back (retried): in its place by enqueue order, which listing relies on.
      var runs = values
      let index = runs.partitioningIndex { $0.firstSequence > run.firstSequence }
      runs.insert(run, at: index)
      self = RunTable(runs)
    } else {
      positions[run.id] = Int32(values.count)
      if values.count % Self.blockSize == 0 { blocks.append(Block()) }
      blocks[values.count / Self.blockSize].add(run)
      values.append(run)
    }
  }

  /// Changes a run in place; nil when there is no run with that id.
  mutating func modify<T, E: Error>(_ id: RunID, _ body: (inout Run) throws(E) -> T) throws(E) -> T? {
    guard let position = positions[id] else { return nil }
    let before = values[Int(position)].state
    defer { moved(at: Int(position), from: before, to: values[Int(position)].state) }
    return try body(&values[Int(position)])
  }

  private mutating func moved(at position: Int, from before: RunState, to after: RunState) {
    guard before != after else { return }
    blocks[position / Self.blockSize].states[before.index] -= 1
    blocks[position / Self.blockSize].states[after.index] += 1
  }

  mutating func reserveCapacity(_ count: Int) {
    values.reserveCapacity(count)
    positions.reserveCapacity(count)
  }

  package static func == (lhs: RunTable, rhs: RunTable) -> Bool { lhs.values == rhs.values }

  package func hash(into hasher: inout Hasher) { hasher.combine(values) }
}

extension Array {
  /// The first index whose element satisfies `belongsInSecondPartition`, which is false for a
  /// prefix of the array and true for the rest (a binary search).
  func partitioningIndex(where belongsInSecondPartition: (Element) -> Bool) -> Int {
    var low = 0
    var high = count
    while low < high {
      let middle = low + (high - low) / 2
      if belongsInSecondPartition(self[middle]) { high = middle } else { low = middle + 1 }
    }
    return low
  }
}
