import Control
import Crypto
import Flows
import Foundation
import GPSModel
import GPSTestSupport
import GRPCCore
import Logging
import Queue
import RPC
import ReferenceFlow
import Services
import SwiftProtobuf
import Synchronization
import Testing

@Suite struct EnqueueValidationTests {
  @Test func aRejectedEnqueueWritesNothing() async throws {
    try await withTemporaryDirectory { directory in
      var options = QueueOptions()
      options.log.fsync = .none
      let queue = try RunQueue(directory: directory.path, options: options)
      defer { queue.close() }
      _ = try await enqueue(queue, ServerFlow.deployment, snippet)
      for bad in [
        #"{"data_info": {"dataset": 5}}"#, #"{"datainfo": {}}"#, "{}", #"{"data_info": {"object_storage_url": []}}"#,
      ] {
        let error = #expect(throws: FlowsError.self) { try ServerFlow.deployment.enqueueRequest(parametersJSON: bad) }
        #expect(error?.code == .invalidParameter)
      }
      #expect(queue.state.lastSequence == 1)
      #expect(queue.durableSequence <= 1)
      let unknown = #expect(throws: FlowsError.self) {
        try DeploymentRegistry.standard.deployment(named: "server-flow/Nope")
      }
      #expect(unknown?.message == #"no deployment is named "server-flow/Nope" (known: server-flow/MyPrefectDeployer)"#)
    }
  }
}
