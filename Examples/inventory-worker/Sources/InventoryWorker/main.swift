import Foundation
// gps-example: serves the `inventory/…` deployment to a running `gps server start`.
//
//   inventory-worker --server 127.0.0.1:4200 [--deployment quote] [--discount-type double] [--id ID]
//     [--delay-ms N]
import GPS
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging

func option(_ name: String, default value: String) -> String {
  let arguments = CommandLine.arguments
  guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return value }
  return arguments[index + 1]
}

let server: ServiceAddress
do {
  server = try ServiceAddress(parsing: option("--server", default: "127.0.0.1:4200"), what: "--server")
} catch {
  FileHandle.standardError.write(Data("inventory-worker: \(error)\n".utf8))
  exit(2)
}
let deployment = InventoryFlow.deployment(
  name: option("--deployment", default: "quote"), discountType: option("--discount-type", default: "double"))
var options = SchedulerOptions(concurrency: 4)
options.id = option("--id", default: options.id)

// The Pricing service runs in this process; the flow's step reaches it through a gRPC client that
// the worker hands to steps as a dependency.
let pricing = GRPCServer(
  transport: .http2NIOPosix(address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext),
  services: [PricingService(delay: .milliseconds(Int(option("--delay-ms", default: "0")) ?? 0))])
try await withThrowingDiscardingTaskGroup { group in
  group.addTask { try await pricing.serve() }
  guard let address = try await pricing.listeningAddress?.ipv4 else { fatalError("the Pricing server did not start") }
  try await withGRPCClient(
    transport: .http2NIOPosix(
      target: .ipv4(address: address.host, port: address.port), transportSecurity: .plaintext)
  ) { client in
    // Written at once, not buffered: whoever started the worker may be waiting for this line.
    FileHandle.standardOutput.write(Data("serving \(deployment.name) to \(server) as \(options.id)\n".utf8))
    try await Worker(
      server: server, deployments: [deployment],
      dependencies: Dependencies(Inventory_V1_Pricing.Client(wrapping: client)),
      options: options
    ).serve()
  }
  pricing.beginGracefulShutdown()
}
