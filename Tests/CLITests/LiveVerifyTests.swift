import Control
import Flows
import Foundation
import GPSModel
import GPSTestSupport
import GRPCCore
import Queue
import RPC
import ReferenceFlow
import Services
import SwiftProtobuf
import Testing

/// `gps history verify` beside a server under enqueue load checks a consistent prefix of the log.
@Suite struct LiveVerifyTests {
  @Test func verifyBesideALiveServerUnderLoadHoldsEveryTime() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      let server = try GPSProcess(["server", "start", "--data-dir", data, "--port", "0", "--no-scheduler"])
      let address = try ServiceAddress(parsing: try await server.listeningAddress(), what: "server")
      let load = Task {
        try await withControlClient(address) { control in
          while !Task.isCancelled {
            let requests = (0..<200).map { index in
              Gps_V1_EnqueueRunRequest.with {
                $0.deployment = "server-flow/MyPrefectDeployer"
                $0.parametersJson = #"{"data_info": {"dataset": "d\#(index)"}}"#
              }
            }
            try await control.enqueueStream { writer in
              try await writer.write(contentsOf: requests)
            } onResponse: { response in
              for try await _ in response.messages {}
            }
          }
        }
      }
      defer { load.cancel() }
      // Wait until the load is on.
      try await eventually("the first runs", limit: .seconds(60)) {
        (try? LogReader(directory: data).lastSequence()) ?? 0 > 200
      }
      for _ in 0..<10 {
        let verify = try await GPSProcess.run(["history", "verify", "--data-dir", data])
        #expect(verify.status == 0, "\(verify.stderr)")
        #expect(verify.stdout.hasPrefix("history verified: "), "\(verify.stdout)")
      }
      load.cancel()
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0)
    }
  }
}
