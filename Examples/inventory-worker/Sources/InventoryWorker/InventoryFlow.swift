import GPS
import GRPCCore
import GRPCNIOTransportHTTP2
import SwiftProtobuf

/// The example's flow, written only against GPS's public API: one step that prices an order with
/// the example's own Pricing service.
enum InventoryFlow {
  typealias PricingClient = Inventory_V1_Pricing.Client<HTTP2ClientTransport.Posix>

  /// The types the server needs to validate `order` and show the result, from `protoc
  /// --include_imports --descriptor_set_out` (embedded in Generated/DescriptorSet.swift).
  static let descriptors: DescriptorPool = {
    guard let pool = try? DescriptorPool(base64: embeddedDescriptorSet) else {
      preconditionFailure("the embedded descriptor set does not decode")
    }
    return pool
  }()

  /// `discountType` is the type of the optional `discount` parameter: changing it changes the
  /// definition, which the server records as a new version.
  static func flow(discountType: String = "double") -> Flow {
    Flow(
      name: "inventory",
      parameters: ParameterSet([
        ParameterSpec(name: "order", type: "inventory.v1.Order", description: "The order to price."),
        ParameterSpec(name: "discount", type: discountType, required: false, description: "A discount to note."),
      ]),
      steps: [
        Step("price", retry: RetryPolicy(maxAttempts: 2), timeout: .seconds(10)) { context in
          let pricing = try context.dependency(PricingClient.self)
          return try await pricing.price(
            try context.parameter("order", as: Inventory_V1_Order.self), metadata: context.metadata,
            options: context.callOptions)
        }
      ],
      descriptors: descriptors)
  }

  static func deployment(name: String, discountType: String) -> Deployment {
    Deployment(
      name: "inventory/\(name)", flow: flow(discountType: discountType), tags: ["inventory"],
      crashPolicy: CrashPolicy(maxRequeues: 3), description: "Prices an order with the Pricing service.")
  }
}
