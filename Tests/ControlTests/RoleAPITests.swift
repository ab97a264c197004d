import Control
import Flows
import Foundation
import GPSModel
import GPSTestSupport
import GRPCCore
import GRPCInProcessTransport
import Queue
import RPC
import ReferenceFlow
import SwiftProtobuf
import Testing

/// Roles of tokens: each call needs one, checked where it enters; a worker serves only the
/// deployments its principal registered first; events name who the server authenticated.
@Suite struct RoleAPITests {
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

  /// The tokens file of these tests, written with mode 600 and loaded as the server loads it:
  /// such a file is not warned about.
  static func loadTokens() async throws -> AccessTokens {
    try await withTemporaryDirectory { root in
      try root.writeFile("tokens", Array(tokens.utf8))
      chmod(root.path + "/tokens", 0o600)
      var warnings: [String] = []
      let loaded = try AccessTokens.load(file: root.path + "/tokens") { warnings.append($0) }
      #expect(!warnings.joined().contains("may be read by others"), "\(warnings)")
      return loaded
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
    try await withControlAPI(tokens: try await Self.loadTokens()) { engine, control in
      func as_(_ token: String, _ body: () async throws -> Void) async throws {
        try await CallToken.$value.withValue("0123456789abcdef-\(token)") { try await body() }
      }
      func claim(_ scheduler: String, _ deployments: [String]) async throws {
        _ = try await control.claim(
          .with {
            $0.scheduler = scheduler
            $0.deployments = deployments
          })
      }
      let enqueue = Gps_V1_EnqueueRunRequest.with {
        $0.deployment = "server-flow/MyPrefectDeployer"
        $0.parametersJson = #"{"data_info": {"object_storage_urls": ["a"], "dataset": "b"}}"#
      }
      // No token, or one the server does not know: nothing is called.
      let none = await #expect(throws: RPCError.self) { _ = try await control.listRuns(.init()) }
      #expect(none?.code == .unauthenticated)
      // A reader reads, and nothing more: the denial names the role needed.
      try await as_("view") {
        _ = try await control.listRuns(.init())
        let refused = await denied { _ = try await control.enqueue(enqueue) }
        #expect(
          refused?.contains("viewer (roles: reader) may not call Enqueue: it needs the operator role") == true,
          "\(refused ?? "allowed")")
        #expect(
          await denied {
            try await claim("x", ["a/b"])
          }?.contains("needs the worker role") == true)
      }
      // An operator enqueues and cancels, but neither archives nor claims.
      try await as_("ops") {
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
      try await as_("w1") {
        _ = try await control.registerDeployments(
          .with {
            $0.worker = "w1-process"; $0.definitions = [Self.definition("inv/quote")]
          })
      }
      try await as_("w2") {
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
            try await claim("w2", ["inv/quote"])
          }?.contains("belongs to w1") == true)
        let any = await denied { _ = try await control.claim(.with { $0.scheduler = "w2" }) }
        #expect(any?.contains("a worker names the deployments it claims") == true, "\(any ?? "allowed")")
        // The server's own deployment (the reference flow) may be served by any worker.
        try await claim("w2-label", ["server-flow/MyPrefectDeployer"])
      }
      // Only an admin hands a deployment over, and only to a principal the server knows; then the
      // new owner's workers serve it, and the old owner's may not.
      try await as_("ops") {
        let handOver = await denied {
          _ = try await control.handOverDeployment(
            .with {
              $0.deployment = "inv/quote"; $0.to = "ops"
            })
        }
        #expect(handOver?.contains("may not call HandOverDeployment: it needs the admin role") == true)
      }
      try await as_("root") {
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
      try await as_("w2") {
        try await claim("w2-new", ["inv/quote"])
      }
      try await as_("w1") {
        let claim = await denied {
          try await claim("w1-process", ["inv/quote"])
        }
        #expect(
          claim?.contains("deployment inv/quote belongs to w2, to whom root handed it over") == true,
          "\(claim ?? "allowed")")
      }
      // An admin may do all of it, for any deployment.
      try await as_("root") {
        _ = try await control.registerDeployments(
          .with {
            $0.worker = "root"; $0.definitions = [Self.definition("inv/quote")]
          })
        _ = try await control.archiveLog(
          .with {
            $0.beforeSequence = 1; $0.dryRun = true; $0.archivedBy = "someone else"
          })
      }
      // The log names who the server authenticated, and keeps a client's own words as a label.
      let applied = engine.queue.state.lastSequence
      await engine.queue.waitUntilDurable(applied)
      var claimedBy: [String] = []
      var registeredBy: [String] = []
      var handedOvers: [String] = []
      for (_, event) in try loggedEvents(in: engine.queue.directory) {
        if case .claimed(let claim) = event.kind { claimedBy.append("\(claim.principal)/\(claim.scheduler)") }
        if case .deploymentRegistered(let registered) = event.kind, registered.definition.name == "inv/quote" {
          registeredBy.append(registered.registeredBy)
        }
        if case .deploymentHandedOver(let handedOver) = event.kind {
          handedOvers.append("\(handedOver.from)->\(handedOver.to) by \(handedOver.handedOverBy): \(handedOver.note)")
        }
      }
      #expect(registeredBy == ["w1"], "\(registeredBy)")
      #expect(claimedBy == ["w2/w2-label"], "\(claimedBy)")
      #expect(handedOvers == ["w1->w2 by root: team change"], "\(handedOvers)")
    }
  }
}
