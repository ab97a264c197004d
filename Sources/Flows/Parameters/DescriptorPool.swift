public import Foundation
public import SwiftProtobuf

/// The protobuf message and enum types GPS knows, by full name (`gps.v1.DataInfo`), read from a
/// FileDescriptorSet. Parameters are validated and their JSON Schemas generated from these
/// descriptors, so a deployment can take any message type in `protos/` without hand-written code.
public struct DescriptorPool: Sendable {
  public private(set) var messages: [String: Google_Protobuf_DescriptorProto] = [:]
  public private(set) var enums: [String: Google_Protobuf_EnumDescriptorProto] = [:]

  /// The descriptors of every proto in `protos/`, committed by `make proto`.
  public static let gps: DescriptorPool = {
    guard let data = Data(base64Encoded: embeddedDescriptorSet, options: .ignoreUnknownCharacters),
      let pool = try? DescriptorPool(descriptorSet: data)
    else { preconditionFailure("the embedded descriptor set does not decode; run `make proto`") }
    return pool
  }()

  public init(descriptorSet: Data) throws {
    let set = try Google_Protobuf_FileDescriptorSet(serializedBytes: descriptorSet)
    for file in set.file {
      let prefix = file.package.isEmpty ? "" : file.package + "."
      for message in file.messageType { add(message, prefix: prefix) }
      for enumType in file.enumType { enums[prefix + enumType.name] = enumType }
    }
  }

  private mutating func add(_ message: Google_Protobuf_DescriptorProto, prefix: String) {
    let name = prefix + message.name
    messages[name] = message
    for nested in message.nestedType { add(nested, prefix: name + ".") }
    for enumType in message.enumType { enums[name + "." + enumType.name] = enumType }
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
