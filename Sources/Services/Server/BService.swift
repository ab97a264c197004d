package import GRPCCore
import GRPCProtobuf
import RPC
import SwiftProtobuf

/// Service B: validates a manifest produced by A and summarises the dataset in a `Response`.
package struct BService: Gps_V1_B.SimpleServiceProtocol {
  /// Requests above this many bytes get RESOURCE_EXHAUSTED.
  package let maxRequestBytes: Int

  package init(maxRequestBytes: Int = 4 * 1024 * 1024) {
    self.maxRequestBytes = maxRequestBytes
  }

  package func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    router.registerHandler(
      forMethod: Gps_V1_B.Method.Process.descriptor,
      deserializer: SizeLimitedDeserializer(ProtobufDeserializer<Gps_V1_Manifest>(), limit: maxRequestBytes),
      serializer: ProtobufSerializer<Gps_V1_Response>(),
      handler: { request, context in try await self.process(request: request, context: context) }
    )
  }

  package func process(request: Gps_V1_Manifest, context: ServerContext) async throws -> Gps_V1_Response {
    try Self.validate(request)
    guard let digest = DatasetDigest.compute(objectDigests: request.objects.map(\.sha256)) else {
      // validate() already checked every digest; this is unreachable unless the two disagree.
      throw RPCError(code: .internalError, message: "could not compute the dataset digest")
    }
    return .with {
      $0.dataset = request.dataset
      $0.objectCount = request.objectCount
      $0.totalBytes = request.totalBytes
      $0.datasetDigest = digest
      let noun = request.objectCount == 1 ? "object" : "objects"
      $0.message =
        "processed dataset '\(request.dataset)': \(request.objectCount) \(noun), \(request.totalBytes) bytes, digest \(digest)"
    }
  }

  /// Throws INVALID_ARGUMENT naming the first inconsistency of the manifest.
  package static func validate(_ manifest: Gps_V1_Manifest) throws(RPCError) {
    func invalid(_ message: String) -> RPCError { RPCError(code: .invalidArgument, message: "manifest." + message) }
    guard !manifest.dataset.isEmpty else { throw invalid("dataset is empty") }
    guard !manifest.objects.isEmpty else { throw invalid("objects is empty; a manifest lists at least one object") }
    guard manifest.objectCount == manifest.objects.count else {
      throw invalid("object_count is \(manifest.objectCount) but objects has \(manifest.objects.count) entries")
    }
    var total: UInt64 = 0
    for (index, object) in manifest.objects.enumerated() {
      guard !object.url.isEmpty else { throw invalid("objects[\(index)].url is empty") }
      guard object.sha256.utf8.count == 64, DatasetDigest.decodeHex(object.sha256) != nil else {
        throw invalid("objects[\(index)].sha256 must be 64 lowercase hex characters, got \(quotedInput(object.sha256))")
      }
      let (sum, overflow) = total.addingReportingOverflow(object.sizeBytes)
      guard !overflow else { throw invalid("total size overflows 64 bits") }
      total = sum
    }
    guard total == manifest.totalBytes else {
      throw invalid("total_bytes is \(manifest.totalBytes) but the objects add up to \(total)")
    }
  }
}
