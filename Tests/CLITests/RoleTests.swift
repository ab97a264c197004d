import Control
import Flows
import Foundation
import GPSModel
import GPSTestSupport
import GRPCCore
import Queue
import RPC
import SwiftProtobuf
import Testing

/// Roles of tokens: each call needs one, checked where it enters (gRPC and HTTP alike); a worker
/// serves only the deployments its principal registered first; events name who the server
/// authenticated.
@Suite struct RoleTests {
  static let tokens = """
    # NAME TOKEN ROLES
    root 0123456789abcdef-root admin
    ops 0123456789abcdef-ops operator
    viewer 0123456789abcdef-view reader
    w1 0123456789abcdef-w1 worker
    w2 0123456789abcdef-w2 worker,reader

    """

  static func definition(_ name: String) -> DeploymentDefinition {
    .with {
      $0.name = name
      $0.flow = String(name.split(separator: "/")[0])
      $0.steps = [.with { $0.name = "s" }]
      $0.parameters = [
        .with {
          $0.name = "n"
          $0.type = "int64"
          $0.required = false
        }
      ]
    }
  }

  func denied(_ body: () async throws -> Void) async -> String? {
    do {
      try await body()
      return nil
    } catch let error as RPCError {
      return error.code == .permissionDenied ? error.message : "\(error.code): \(error.message)"
    } catch {
      return "\(error)"
    }
  }

  @Test func eachRoleMayDoWhatItAllowsAndNoMore() async throws {
    try await withTemporaryDirectory { root in
      let data = root.path + "/data"
      try root.writeFile("tokens", Array(Self.tokens.utf8))
      chmod(root.path + "/tokens", 0o600)
      let server = try GPSProcess([
        "server", "start", "--data-dir", data, "--port", "0", "--http-port", "0", "--no-scheduler", "--tokens",
        root.path + "/tokens",
      ])
      let address = try ServiceAddress(parsing: try await server.listeningAddress(), what: "server")
      func as_(_ token: String, _ body: (ControlClient) async throws -> Void) async throws {
        try await withControlClient(address, credentials: .init(token: "0123456789abcdef-\(token)")) {
          try await body($0)
        }
      }
      let enqueue = Gps_V1_EnqueueRunRequest.with {
        $0.deployment = "server-flow/MyPrefectDeployer"
        $0.parametersJson = #"{"data_info": {"object_storage_urls": ["a"], "dataset": "b"}}"#
      }
      // A reader reads, and nothing more: the denial names the role needed.
      try await as_("view") { control in
        _ = try await control.listRuns(.init())
        let refused = await denied { _ = try await control.enqueue(enqueue) }
        #expect(
          refused?.contains("viewer (roles: reader) may not call Enqueue: it needs the operator role") == true,
          "\(refused ?? "allowed")")
        #expect(
          await denied {
            _ = try await control.claim(
              .with {
                $0.scheduler = "x"; $0.deployments = ["a/b"]
              })
          }?.contains("needs the worker role") == true)
      }
      // An operator enqueues and cancels, but neither archives nor claims.
      try await as_("ops") { control in
        _ = try await control.enqueue(enqueue)
        let archive = await denied {
          _ = try await control.archiveLog(
            .with {
              $0.beforeSequence = 1; $0.dryRun = true
            })
        }
        #expect(archive?.contains("it needs the admin role") == true, "\(archive ?? "allowed")")
        #expect(
          await denied {
            _ = try await control.registerDeployments(
              .with {
                $0.worker = "x"; $0.definitions = [Self.definition("inv/quote")]
              })
          }?.contains("needs the worker role") == true)
      }
      // A worker owns what it registered first; another worker may not take it over or claim its runs.
      try await as_("w1") { control in
        _ = try await control.registerDeployments(
          .with {
            $0.worker = "w1-process"; $0.definitions = [Self.definition("inv/quote")]
          })
      }
      try await as_("w2") { control in
        let takeover = await denied {
          _ = try await control.registerDeployments(
            .with {
              $0.worker = "w2-process"; $0.definitions = [Self.definition("inv/quote")]
            })
        }
        #expect(
          takeover?.contains("deployment inv/quote belongs to w1, who registered it first") == true,
          "\(takeover ?? "allowed")")
        #expect(
          await denied {
            _ = try await control.claim(
              .with {
                $0.scheduler = "w2"; $0.deployments = ["inv/quote"]
              })
          }?.contains("belongs to w1") == true)
        let any = await denied { _ = try await control.claim(.with { $0.scheduler = "w2" }) }
        #expect(any?.contains("a worker names the deployments it claims") == true, "\(any ?? "allowed")")
        // The server's own deployment (the reference flow) may be served by any worker.
        _ = try await control.claim(
          .with {
            $0.scheduler = "w2-label"; $0.deployments = ["server-flow/MyPrefectDeployer"]
          })
      }
      // Only an admin hands a deployment over, and only to a principal the server knows; then the
      // new owner's workers serve it, and the old owner's may not.
      try await as_("ops") { control in
        let handOver = await denied {
          _ = try await control.handOverDeployment(
            .with {
              $0.deployment = "inv/quote"; $0.to = "ops"
            })
        }
        #expect(handOver?.contains("may not call HandOverDeployment: it needs the admin role") == true)
      }
      try await as_("root") { control in
        do {
          _ = try await control.handOverDeployment(
            .with {
              $0.deployment = "inv/quote"; $0.to = "nobody"
            })
          Issue.record("a hand-over to an unknown principal was accepted")
        } catch let error as RPCError {
          #expect(error.code == .invalidArgument)
          #expect(error.message.contains(#"no token in the server's tokens file is named "nobody""#), "\(error)")
        }
        let info = try await control.handOverDeployment(
          .with {
            $0.deployment = "inv/quote"; $0.to = "w2"; $0.note = "team change"
          })
        #expect(info.owner == "w2")
        #expect(info.registeredBy == "w1")
      }
      try await as_("w2") { control in
        _ = try await control.claim(
          .with {
            $0.scheduler = "w2-new"; $0.deployments = ["inv/quote"]
          })
      }
      try await as_("w1") { control in
        let claim = await denied {
          _ = try await control.claim(
            .with {
              $0.scheduler = "w1-process"; $0.deployments = ["inv/quote"]
            })
        }
        #expect(
          claim?.contains("deployment inv/quote belongs to w2, to whom root handed it over") == true,
          "\(claim ?? "allowed")")
      }
      // An admin may do all of it, for any deployment.
      try await as_("root") { control in
        _ = try await control.registerDeployments(
          .with {
            $0.worker = "root"; $0.definitions = [Self.definition("inv/quote")]
          })
        _ = try await control.archiveLog(
          .with {
            $0.beforeSequence = 1; $0.dryRun = true; $0.archivedBy = "someone else"
          })
      }
      // Over HTTP the same: 403 naming the role; the pages offer only what the role may do.
      let web = WebClient(base: try await server.webAddress())
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
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0, "\(server.stderr)")
      #expect(!server.stderr.contains("may be read by others"))
      // The log names who the server authenticated, and keeps a client's own words as a label.
      var claimedBy: [String] = []
      var registeredBy: [String] = []
      var handedOvers: [String] = []
      try QueueHistory(directory: data).events { _, event in
        if case .claimed(let claim) = event.kind { claimedBy.append("\(claim.principal)/\(claim.scheduler)") }
        if case .deploymentRegistered(let registered) = event.kind, registered.definition.name == "inv/quote" {
          registeredBy.append(registered.registeredBy)
        }
        if case .deploymentHandedOver(let handedOver) = event.kind {
          handedOvers.append("\(handedOver.from)->\(handedOver.to) by \(handedOver.handedOverBy): \(handedOver.note)")
        }
        return true
      }
      #expect(registeredBy == ["w1"], "\(registeredBy)")
      #expect(claimedBy == ["w2/w2-label"], "\(claimedBy)")
      #expect(handedOvers == ["w1->w2 by root: team change"], "\(handedOvers)")
    }
  }

  @Test(arguments: [
    ("alice 0123456789abcdef-alice\n", "line 1: alice has no roles; write NAME TOKEN ROLE[,ROLE…]"),
    (
      "alice 0123456789abcdef-alice root\n", "line 1: root is not a role; the roles are admin, operator, worker, reader"
    ),
    ("a 0123456789abcdef-same admin\nb 0123456789abcdef-same reader\n", "line 2: b has the token of a"),
  ])
  func aTokensFileThatIsNotRightIsRefusedAtStart(contents: String, expected: String) async throws {
    try await withTemporaryDirectory { root in
      try root.writeFile("tokens", Array(contents.utf8))
      let result = try await GPSProcess.run([
        "server", "start", "--data-dir", root.path + "/data", "--port", "0", "--no-web", "--tokens",
        root.path + "/tokens",
      ])
      #expect(result.status == 1)
      #expect(result.stderr.contains(expected), "\(result.stderr)")
      #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
    }
  }

  @Test func aTokensFileOthersMayReadIsWarnedAbout() async throws {
    try await withTemporaryDirectory { root in
      try root.writeFile("tokens", Array("alice 0123456789abcdef-alice admin\n".utf8))
      chmod(root.path + "/tokens", 0o644)
      let server = try GPSProcess([
        "server", "start", "--data-dir", root.path + "/data", "--port", "0", "--no-web", "--no-scheduler", "--tokens",
        root.path + "/tokens",
      ])
      _ = try await server.listeningAddress()
      server.signal(SIGTERM)
      #expect(await server.waitForExit() == 0)
      #expect(server.stderr.contains("may be read by others (mode 644); chmod 600 it"), "\(server.stderr)")
    }
  }
}
