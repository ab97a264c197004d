package import GPSModel

extension QueueState {
  /// The principal whose workers serve `deployment`: the one it was last handed over to, else
  /// who registered its first version; nil when no version was registered.
  package func owner(of deployment: String) -> String? {
    handOvers[deployment]?.to ?? deployments[deployment]?.first?.registeredBy
  }

  /// The newest version of the deployment named `name`, or nil when none was registered.
  package func deployment(named name: String) -> DeploymentVersion? { deployments[name]?.last }

  /// Version `version` of the deployment named `name` (0: the newest).
  package func deployment(named name: String, version: UInt32) -> DeploymentVersion? {
    guard version != 0 else { return deployment(named: name) }
    guard let versions = deployments[name], version <= versions.count else { return nil }
    return versions[Int(version) - 1]
  }

  /// The concurrency limit of the deployment's newest version, if it has one.
  func registeredLimit(of deployment: String) -> Int? {
    guard let limit = deployments[deployment]?.last?.definition.concurrencyLimit, limit > 0 else { return nil }
    return Int(limit)
  }

  mutating func register(_ event: Gps_V1_DeploymentRegistered, time: Timestamp, sequence: UInt64) throws(QueueError) {
    let name = event.definition.name
    guard !name.isEmpty else {
      throw QueueError(code: .illegalTransition, message: "event \(sequence): a deployment registered without a name")
    }
    let versions = deployments[name] ?? []
    guard event.version == versions.count + 1 else {
      throw QueueError(
        code: .illegalTransition,
        message:
          "event \(sequence): deployment \(name) registered as version \(event.version) after version \(versions.count)"
      )
    }
    deployments[name, default: []].append(
      DeploymentVersion(
        definition: event.definition, version: event.version, registeredAt: time, worker: event.worker,
        registeredBy: event.registeredBy, sequence: sequence))
  }

  mutating func handOver(_ event: Gps_V1_DeploymentHandedOver, time: Timestamp, sequence: UInt64) throws(QueueError) {
    guard deployments[event.deployment] != nil else {
      throw QueueError(
        code: .illegalTransition,
        message: "event \(sequence): deployment \(event.deployment) handed over, but no version of it was registered")
    }
    guard !event.to.isEmpty else {
      throw QueueError(
        code: .illegalTransition, message: "event \(sequence): deployment \(event.deployment) handed over to no one")
    }
    handOvers[event.deployment] = DeploymentHandOver(
      to: event.to, by: event.handedOverBy, note: event.note, at: time, sequence: sequence)
  }
}
