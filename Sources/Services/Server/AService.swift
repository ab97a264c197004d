package import GRPCCore
import GRPCProtobuf
import RPC
import SwiftProtobuf

/// Service A: resolves a dataset's object URLs in the object store and returns their sizes and digests.
package struct AService: Gps_V1_A.SimpleServiceProtocol {
  package let store: ObjectStore
  /// Requests above this many bytes get RESOURCE_EXHAUSTED.
  package let maxRequestBytes: Int
  /// Upper bound on URLs per request, so one call cannot ask for unbounded work.
  package let maxObjects: Int

  package init(store: ObjectStore, maxRequestBytes: Int = 4 * 1024 * 1024, maxObjects: Int = 10_000) {
    self.store = store
    self.maxRequestBytes = maxRequestBytes
    self.maxObjects = maxObjects
  }

  package func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    router.registerHandler(
      forMethod: Gps_V1_A.Method.Prepare.descriptor,
      deserializer: SizeLimitedDeserializer(ProtobufDeserializer<Gps_V1_DataInfo>(), limit: maxRequestBytes),
      serializer: ProtobufSerializer<Gps_V1_Manifest>(),
      handler: { request, context in try await self.prepare(request: request, context: context) }
    )
  }

  package func prepare(request: Gps_V1_DataInfo, context: ServerContext) async throws -> Gps_V1_Manifest {
    guard !request.dataset.isEmpty else {
      throw RPCError(code: .invalidArgument, message: "data_info.dataset is empty; give the dataset name")
    }
    guard !request.objectStorageUrls.isEmpty else {
      throw RPCError(
        code: .invalidArgument, message: "data_info.object_storage_urls is empty; give at least one object URL")
    }
    guard request.objectStorageUrls.count <= maxObjects else {
      throw RPCError(
        code: .invalidArgument,
        message:
          "data_info.object_storage_urls has \(request.objectStorageUrls.count) URLs; at most \(maxObjects) are allowed"
      )
    }
    var manifest = Gps_V1_Manifest()
    manifest.dataset = request.dataset
    for url in request.objectStorageUrls {
      let object: ObjectDescription
      do {
        object = try await store.describe(url: url)
      } catch let error as ObjectStoreError {
        throw RPCError(code: error.rpcCode, message: error.message)
      }
      manifest.objects.append(
        .with {
          $0.url = object.url
          $0.sizeBytes = object.sizeBytes
          $0.sha256 = object.sha256
        })
      manifest.totalBytes += object.sizeBytes
    }
    manifest.objectCount = UInt32(manifest.objects.count)
    return manifest
  }
}

extension ObjectStoreError {
  /// The gRPC status code a client sees for this error.
  var rpcCode: RPCError.Code {
    switch code {
    case .notFound: .notFound
    case .invalidURL, .unsupportedScheme, .outsideRoot, .notAnObject: .invalidArgument
    case .invalidRoot, .unreadable: .internalError
    }
  }
}
