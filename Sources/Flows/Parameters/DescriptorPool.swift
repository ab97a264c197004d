public import Foundation
public import SwiftProtobuf

/// Protobuf message and enum types by full name (`gps.v1.DataInfo`), read from a
/// FileDescriptorSet. Parameters are validated and their JSON Schemas generated from these
/// descriptors, so a deployment can take any message type without hand-written code, and a server
/// can validate types it never linked.
public struct DescriptorPool: Sendable {
  public private(set) var messages: [String: Google_Protobuf_DescriptorProto] = [:]
  public private(set) var enums: [String: Google_Protobuf_EnumDescriptorProto] = [:]
  /// The files, by name, and the file that declares each type.
  private var files: [String: Google_Protobuf_FileDescriptorProto] = [:]
  private var fileOfType: [String: String] = [:]

  /// No types: for flows whose parameters and results are scalars and well-known types only.
  public static let empty = DescriptorPool()

  public init() {}

  /// The types of a serialized `google.protobuf.FileDescriptorSet`, as `protoc --include_imports
  /// --descriptor_set_out=FILE` writes it.
  public init(descriptorSet: Data) throws {
    try add(descriptorSet: descriptorSet)
  }

  /// Adds the types of another descriptor set (a file already in the pool is kept as it is).
  public mutating func add(descriptorSet: Data) throws {
    let set = try Google_Protobuf_FileDescriptorSet(serializedBytes: descriptorSet)
    for file in set.file where files[file.name] == nil {
      files[file.name] = file
      let prefix = file.package.isEmpty ? "" : file.package + "."
      for message in file.messageType { add(message, prefix: prefix, file: file.name) }
      for enumType in file.enumType {
        enums[prefix + enumType.name] = enumType
        fileOfType[prefix + enumType.name] = file.name
      }
    }
  }

  /// The types of a descriptor set given in base64 (e.g. embedded in source code).
  public init(base64 text: String) throws {
    guard let data = Data(base64Encoded: text, options: .ignoreUnknownCharacters) else {
      throw FlowsError(code: .invalidParameter, message: "the descriptor set is not valid base64")
    }
    try self.init(descriptorSet: data)
  }

  private mutating func add(_ message: Google_Protobuf_DescriptorProto, prefix: String, file: String) {
    let name = prefix + message.name
    messages[name] = message
    fileOfType[name] = file
    for nested in message.nestedType { add(nested, prefix: name + ".", file: file) }
    for enumType in message.enumType {
      enums[name + "." + enumType.name] = enumType
      fileOfType[name + "." + enumType.name] = file
    }
  }

  /// A serialized descriptor set with just the files that declare `types` and the files they
  /// import, dependencies first: what a deployment registers so that the server can validate its
  /// parameters. Types that are not in the pool are left out (scalars, or well-known types the
  /// pool was built without).
  public func descriptorSet(for types: [String]) -> Data {
    var ordered: [String] = []
    var visited: Set<String> = []
    func visit(_ name: String) {
      guard !visited.contains(name), let file = files[name] else { return }
      visited.insert(name)
      for dependency in file.dependency { visit(dependency) }
      ordered.append(name)
    }
    for type in types {
      if let file = fileOfType[type.hasPrefix(".") ? String(type.dropFirst()) : type] { visit(file) }
    }
    var set = Google_Protobuf_FileDescriptorSet()
    set.file = ordered.map { files[$0]! }
    return (try? set.serializedBytes()) ?? Data()
  }

  public func message(_ name: String) -> Google_Protobuf_DescriptorProto? {
    messages[name.hasPrefix(".") ? String(name.dropFirst()) : name]
  }

  public func enumType(_ name: String) -> Google_Protobuf_EnumDescriptorProto? {
    enums[name.hasPrefix(".") ? String(name.dropFirst()) : name]
  }

  /// The map-entry message of a `map<K, V>` field, or nil when the field is not a map.
  func mapEntry(of field: Google_Protobuf_FieldDescriptorProto) -> Google_Protobuf_DescriptorProto? {
    guard field.label == .repeated, field.type == .message, let entry = message(field.typeName),
      entry.options.mapEntry
    else { return nil }
    return entry
  }
}
