import GRPCCore
import SwiftProtobuf

/// The example's own gRPC service: 2.50 per item, twice that for a rush order.
struct PricingService: Inventory_V1_Pricing.SimpleServiceProtocol {
  /// How long each answer takes (to watch a run in flight).
  var delay: Duration = .zero

  func price(request: Inventory_V1_Order, context: ServerContext) async throws -> Inventory_V1_Quote {
    if delay > .zero { try await Task.sleep(for: delay) }
    guard !request.items.isEmpty else { throw RPCError(code: .invalidArgument, message: "an order needs items") }
    let count = request.items.reduce(0) { $0 + Int64($1.quantity) }
    let rate: Int64 = request.priority == .rush ? 500 : 250
    let delivery =
      switch request.delivery {
      case .pickupStore(let store): "pickup at \(store)"
      case .shipTo(let address): "ship to \(address.street), \(address.city)"
      case nil: "no delivery chosen"
      }
    let notes = request.notes.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
    return .with {
      $0.customer = request.customer
      $0.totalCents = count * rate
      $0.summary =
        "\(count) items for \(request.customer), \(request.priority), due \(request.hasDue ? "\(request.due.seconds)" : "any time")"
        + "; \(delivery)" + (notes.isEmpty ? "" : "; notes \(notes.joined(separator: ", "))")
    }
  }
}
