import ArgumentParser
import Control
import Flows
import Foundation
import GPSModel
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Queue
import RPC

/// `--data-dir` and `--server`: where the queue is, and how to reach the server that owns it.
struct QueueLocation: ParsableArguments {
  @Option(help: "The data directory; a running server is found through it.")
  var dataDir = "data"

  @Option(
    help:
      "The control server's address, HOST:PORT, or several servers of one cluster, HOST:PORT,HOST2:PORT2 (the leader is followed); default: GPS_SERVER, else the one recorded in the data directory."
  )
  var server: String?

  /// `--server`, else `GPS_SERVER`.
  var serverList: String? {
    if let server { return server }
    if let given = ProcessInfo.processInfo.environment["GPS_SERVER"], !given.isEmpty { return given }
    return nil
  }

  /// The servers `--server` (or `GPS_SERVER`) names; empty when neither is given.
  func servers() throws(CommandFailure) -> [ServiceAddress] {
    guard let serverList else { return [] }
    do {
      return try ControlServers.parse(serverList, what: server != nil ? "--server" : "GPS_SERVER")
    } catch {
      throw CommandFailure(error.message)
    }
  }

  @Option(
    help: "A file holding the token to present to the server (default: the GPS_TOKEN environment variable).")
  var tokenFile: String?

  @Option(
    help:
      "A PEM file of the certificate authorities that vouch for the server: connect with TLS (default: GPS_TLS_CA)."
  )
  var tlsCa: String?

  /// The token (from --token-file or GPS_TOKEN; never an argument, which `ps` shows everyone) and
  /// the TLS authorities to connect with.
  func credentials() throws(CommandFailure) -> ControlCredentials {
    var credentials = ControlCredentials()
    let environment = ProcessInfo.processInfo.environment
    if let tokenFile {
      guard let text = try? String(contentsOfFile: tokenFile, encoding: .utf8) else {
        throw CommandFailure("cannot read --token-file \(tokenFile)")
      }
      let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
      guard !token.isEmpty, !token.contains(where: \.isWhitespace) else {
        throw CommandFailure("--token-file \(tokenFile) should hold one token and nothing else")
      }
      credentials.token = token
    } else if let token = environment["GPS_TOKEN"], !token.isEmpty {
      credentials.token = token
    }
    if let authorities = tlsCa ?? environment["GPS_TLS_CA"], !authorities.isEmpty {
      guard FileManager.default.isReadableFile(atPath: authorities) else {
        throw CommandFailure("cannot read the certificate authorities file \(authorities) (--tls-ca)")
      }
      credentials.certificateAuthorities = authorities
    }
    return credentials
  }

  /// Through the server (`--server`, else the one recorded in the data directory), else the log.
  func route() throws(CommandFailure) -> QueueRoute {
    var route = QueueRoute(dataDirectory: dataDir, servers: try servers(), credentials: try credentials())
    route.logger = Logger(label: "gps")
    return route
  }

  /// The servers to talk to: `--server` (or `GPS_SERVER`), else the address a server recorded in
  /// the data directory.
  func serverAddresses() throws(CommandFailure) -> (addresses: [ServiceAddress], explicit: Bool)? {
    let given = try servers()
    if !given.isEmpty { return (given, true) }
    return ControlAddress.read(dataDirectory: dataDir).map { ([$0], false) }
  }
}

/// Calls fail at once when the server is not there, instead of waiting for it.
let failFast: CallOptions = {
  var options = CallOptions.defaults
  options.waitForReady = false
  options.timeout = .seconds(30)
  return options
}()

/// One line for a failed control call, naming the server.
func describe(_ error: any Error, server: ServiceAddress) -> CommandFailure {
  guard let error = error as? RPCError else { return CommandFailure("\(error)") }
  switch error.code {
  case .unavailable:
    return CommandFailure(
      "cannot reach the GPS server at \(server): \(error.message); start it with `gps server start` or check --server")
  case .unauthenticated:
    return CommandFailure(
      "the GPS server at \(server) refused the call: \(String(error.message.prefix(300)))")
  case .unimplemented:
    return CommandFailure(
      "\(server) is not a GPS control server (it does not serve gps.v1.Control: \(String(error.message.prefix(200)))); give the address `gps server start` printed, with --server"
    )
  case .deadlineExceeded:
    return CommandFailure("the GPS server at \(server) did not answer in time; is it overloaded?")
  case .notFound where error.message.hasPrefix("no run"):
    return CommandFailure(error.message + "; `gps flow-run ls` lists runs")
  default:
    return CommandFailure(error.message)
  }
}

/// Who is asking, for the log: `user@host`.
var requester: String { "\(NSUserName())@\(ProcessInfo.processInfo.hostName)" }
