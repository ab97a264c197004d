import ArgumentParser
import Flows
import Foundation
import GPSModel
import GRPCCore
import RPC
import ReferenceFlow
import Services
import SwiftProtobuf

/// Calls A then B directly, like the Prefect snippet's client; no queue involved.
struct ClientCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "client",
    abstract: "Call service A then service B directly with DataInfo parameters and print B's Response."
  )

  @Option(help: "The DataInfo parameters as JSON, e.g. '\(ServerFlow.sampleDataInfoJSON)'.")
  var dataInfo: String

  @Option(name: .customLong("a"), help: "Address of service A.")
  var aAddress = "127.0.0.1:50051"

  @Option(name: .customLong("b"), help: "Address of service B.")
  var bAddress = "127.0.0.1:50052"

  @Option(parsing: .unconditional, help: "Deadline of each call, e.g. 10s.", transform: DurationArgument.parse)
  var timeout = DurationArgument(.seconds(30), text: "30s")

  @Option(help: "Idempotency key sent to the services (default: a new random key).")
  var idKey: String?

  @Option(help: "Output format: text or json.")
  var output: OutputFormat = .text

  enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
  }

  func run() async throws {
    let a: ServiceAddress
    let b: ServiceAddress
    let parameters: Gps_V1_DataInfo
    do {
      a = try ServiceAddress(parsing: aAddress, what: "--a")
      b = try ServiceAddress(parsing: bAddress, what: "--b")
      parameters = try ServerFlow.decodeDataInfo(dataInfo)
    } catch let error as ServiceAddressError {
      throw CommandFailure(error.message)
    } catch let error as FlowsError {
      throw CommandFailure("--data-info: \(error.message)")
    }
    let key = idKey ?? "client-\(UUID().uuidString.lowercased())"
    let timeout = self.timeout.duration
    let response: Gps_V1_Response
    do {
      response = try await withServiceClients(a: a, b: b) { clients in
        try await clients.runPipeline(parameters, idempotencyKey: key, timeout: timeout)
      }
    } catch let error as PipelineError {
      // The library says what failed; the command adds what to do about it.
      let service = error.service.lowercased()
      let hint =
        switch error.code {
        case .unavailable? where !error.description.contains("injected"):
          "; start it with `gps server \(service)` or pass --\(service) HOST:PORT"
        case .deadlineExceeded?: "; raise --timeout or check the service"
        default: ""
        }
      throw CommandFailure(error.description + hint)
    }
    switch output {
    case .text:
      printLine(response.message)
    case .json:
      var options = JSONEncodingOptions()
      options.preserveProtoFieldNames = true
      options.alwaysPrintInt64sAsNumbers = true
      printLine(try response.jsonString(options: options))
    }
  }
}
