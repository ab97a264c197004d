/// What a worker registers: a deployment's definition, generated from `protos/gps/v1/events.proto`.
public typealias DeploymentDefinition = Gps_V1_DeploymentDefinition

/// One registered version of a deployment: the fold of one `DeploymentRegistered` event.
public struct DeploymentVersion: Sendable, Hashable {
  public var definition: DeploymentDefinition
  /// 1, 2, … per deployment name.
  public var version: UInt32
  public var registeredAt: Timestamp
  /// The worker that registered it, and who that worker ran as.
  public var worker: String
  public var registeredBy: String
  /// The event's position in the log.
  public var sequence: UInt64

  public var name: String { definition.name }

  public init(
    definition: DeploymentDefinition, version: UInt32, registeredAt: Timestamp, worker: String, registeredBy: String,
    sequence: UInt64
  ) {
    self.definition = definition
    self.version = version
    self.registeredAt = registeredAt
    self.worker = worker
    self.registeredBy = registeredBy
    self.sequence = sequence
  }
}

/// A deployment an admin gave to another principal: the fold of its newest
/// `DeploymentHandedOver` event.
public struct DeploymentHandOver: Sendable, Hashable {
  /// Who serves it now, who handed it over, and why.
  public var to: String
  public var by: String
  public var note: String
  public var at: Timestamp
  /// The event's position in the log.
  public var sequence: UInt64

  public init(to: String, by: String, note: String, at: Timestamp, sequence: UInt64) {
    self.to = to
    self.by = by
    self.note = note
    self.at = at
    self.sequence = sequence
  }
}
