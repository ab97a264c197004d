import Control
import Foundation
import GPSTestSupport
import Testing

/// Roles over HTTP, as over gRPC: a request that needs a role its token lacks is a 403 naming the
/// role; the pages offer only what the role may do.
@Suite struct WebRoleTests {
  @Test func eachRoleSeesAndMayDoWhatItAllows() async throws {
    let tokens = AccessTokens([
      ("viewer", "0123456789abcdef-view", .reader), ("ops", "0123456789abcdef-ops", .operator),
    ])
    try await WebHarness.run(tokens: tokens) { harness in
      let web = harness.web
      let view = ["Authorization": "Bearer 0123456789abcdef-view"]
      let post = try await web.post(
        "/api/runs", #"{"deployment": "server-flow/MyPrefectDeployer", "parameters": {"data_info": {"dataset": "b"}}}"#,
        headers: view)
      #expect(post.status == 403, "\(post.body)")
      #expect(post.body.contains("needs the operator role"), "\(post.body)")
      let runs = try await web.get("/runs", headers: ["Cookie": "gps_token=0123456789abcdef-view"])
      #expect(runs.status == 200)
      #expect(!runs.body.contains("cancel-selected"))
      let page = try await web.get(
        "/deployments/server-flow/MyPrefectDeployer", headers: ["Cookie": "gps_token=0123456789abcdef-view"])
      #expect(page.body.contains("Running a deployment needs the operator role"), "\(page.body)")
      #expect(!page.body.contains("run-form"))
      let operatorRuns = try await web.get("/runs", headers: ["Cookie": "gps_token=0123456789abcdef-ops"])
      #expect(operatorRuns.body.contains("cancel-selected"))
    }
  }
}
