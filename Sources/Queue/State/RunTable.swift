/// The runs of a queue, in enqueue order, found by id.
///
/// Runs are stored densely in an array with a small id → position index beside it, rather than as
/// dictionary values: a dictionary's buckets (a power of two, at most ¾ full) would hold the whole
/// run, which doubles the memory of a million runs.
public struct RunTable: Sendable, Hashable {
  /// Every run, in the order they were enqueued.
  public private(set) var values: [Run] = []
  private var positions: [RunID: Int32] = [:]

  public init() {}

  /// A table of `runs`, which have distinct ids.
  init(_ runs: [Run]) {
    values = runs
    positions.reserveCapacity(runs.count)
    runs.withUnsafeBufferPointer { runs in
      for index in runs.indices { positions[runs[index].id] = Int32(index) }
    }
  }

  public var count: Int { values.count }
  public var isEmpty: Bool { values.isEmpty }
  public var keys: [RunID] { values.map(\.id) }

  public subscript(id: RunID) -> Run? {
    guard let position = positions[id] else { return nil }
    return values[Int(position)]
  }

  /// Adds a new run, or replaces the run with its id.
  mutating func put(_ run: Run) {
    if let position = positions[run.id] {
      values[Int(position)] = run
    } else {
      positions[run.id] = Int32(values.count)
      values.append(run)
    }
  }

  /// Changes a run in place; nil when there is no run with that id.
  mutating func modify<T, E: Error>(_ id: RunID, _ body: (inout Run) throws(E) -> T) throws(E) -> T? {
    guard let position = positions[id] else { return nil }
    return try body(&values[Int(position)])
  }

  mutating func reserveCapacity(_ count: Int) {
    values.reserveCapacity(count)
    positions.reserveCapacity(count)
  }

  public static func == (lhs: RunTable, rhs: RunTable) -> Bool { lhs.values == rhs.values }

  public func hash(into hasher: inout Hasher) { hasher.combine(values) }
}
