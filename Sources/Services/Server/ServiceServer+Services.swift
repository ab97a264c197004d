package import Logging
package import RPC

extension ServiceServer {
  /// Service A over the object store rooted at `store`.
  package static func a(
    store: ObjectStore, configuration: Configuration, logger: Logger,
    onListening: @escaping @Sendable (ServiceAddress) -> Void = { _ in }
  ) -> ServiceServer {
    ServiceServer(
      name: "a", service: AService(store: store, maxRequestBytes: configuration.maxRequestBytes),
      descriptor: Gps_V1_A.descriptor,
      configuration: configuration, logger: logger, onListening: onListening)
  }

  /// Service B.
  package static func b(
    configuration: Configuration, logger: Logger,
    onListening: @escaping @Sendable (ServiceAddress) -> Void = { _ in }
  ) -> ServiceServer {
    ServiceServer(
      name: "b", service: BService(maxRequestBytes: configuration.maxRequestBytes), descriptor: Gps_V1_B.descriptor,
      configuration: configuration, logger: logger, onListening: onListening)
  }
}
