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
    // Depth first, dependencies before the files that import them, with a stack of its own: a
    // chain of imports thousands long must not overflow the thread's.
    var ordered: [String] = []
    var visited: Set<String> = []
    for type in types {
      guard let root = fileOfType[type.hasPrefix(".") ? String(type.dropFirst()) : type], !visited.contains(root)
      else { continue }
      visited.insert(root)
      var stack: [(name: String, next: Int)] = [(root, 0)]
      while let top = stack.last {
        let dependencies = files[top.name]?.dependency ?? []
        if top.next < dependencies.count {
          stack[stack.count - 1].next += 1
          let dependency = dependencies[top.next]
          if files[dependency] != nil, visited.insert(dependency).inserted { stack.append((dependency, 0)) }
        } else {
          ordered.append(top.name)
          stack.removeLast()
        }
      }
    }
    var set = Google_Protobuf_FileDescriptorSet()
    set.file = ordered.map { files[$0]! }
    return (try? set.serializedBytes()) ?? Data()
  }

  /// How deep a parameter's or a result's types may nest (message fields of message fields …):
  /// the results' decoder stops at this depth too.
  public static let maximumDepth = 64
  /// How many message types one parameter or result may use in all.
  public static let maximumTypes = 10_000

  /// Checks that `type` (a message of the pool), and every message it uses, refer only to types
  /// the pool holds (or well-known ones), nest at most ``maximumDepth`` deep and number at most
  /// ``maximumTypes``; the error names the field and the limit. Breadth first, without recursion.
  func checkReferences(from type: String, what: String) throws(FlowsError) {
    let root = ProtoJSON.typeLabel(type)
    guard ProtoJSON.wellKnownTypes[root] == nil, message(root) != nil else { return }
    var seen: Set<String> = [root]
    var level = [root]
    var depth = 1
    while !level.isEmpty {
      guard depth <= Self.maximumDepth else {
        throw FlowsError(
          code: .invalidParameter,
          message:
            "\(what): its type \(root) nests messages more than \(Self.maximumDepth) deep (through \(level[0])); flatten it"
        )
      }
      var next: [String] = []
      for name in level {
        for field in message(name)?.field ?? []
        where field.type == .message || field.type == .group || field.type == .enum {
          let referenced = ProtoJSON.typeLabel(field.typeName)
          if field.type == .enum {
            guard enumType(referenced) != nil else {
              throw FlowsError(
                code: .invalidParameter,
                message:
                  "\(what): field \(name).\(field.name) is of enum \(referenced), which the descriptor set does not hold (build it with protoc --include_imports)"
              )
            }
            continue
          }
          if ProtoJSON.wellKnownTypes[referenced] != nil && message(referenced) == nil { continue }
          guard message(referenced) != nil else {
            throw FlowsError(
              code: .invalidParameter,
              message:
                "\(what): field \(name).\(field.name) is of type \(referenced), which the descriptor set does not hold (build it with protoc --include_imports)"
            )
          }
          if seen.insert(referenced).inserted {
            guard seen.count <= Self.maximumTypes else {
              throw FlowsError(
                code: .invalidParameter,
                message: "\(what): its type \(root) uses more than \(Self.maximumTypes) message types; split it")
            }
            next.append(referenced)
          }
        }
      }
      level = next
      depth += 1
    }
  }

  /// Files of the pool that import a file it does not hold, with that import: `protoc` without
  /// `--include_imports`.
  var missingImports: [(file: String, missing: String)] {
    files.keys.sorted().flatMap { name in
      files[name]!.dependency.filter { files[$0] == nil }.map { (name, $0) }
    }
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
