import SwiftProtobuf

extension ParameterSet {
  /// A JSON Schema (draft 2020-12) of the parameters object, generated from the descriptors: each
  /// message type once under `$defs`. Properties use proto field names; GPS also accepts the
  /// lowerCamel JSON names.
  public func jsonSchema(title: String, pool: DescriptorPool) -> JSONValue {
    var definitions = SchemaDefinitions()
    var properties: [JSONValue.Member] = []
    for parameter in parameters {
      var schema: [JSONValue.Member]
      if let field = ScalarParameterTypes.field(for: parameter.type) {
        guard case .object(let members) = Self.schema(of: field, pool: pool, definitions: &definitions) else {
          continue
        }
        schema = members
      } else if let wellKnown = Self.wellKnownSchema(ProtoJSON.typeLabel(parameter.type)) {
        guard case .object(let members) = wellKnown else { continue }
        schema = members
      } else {
        schema = [.init("$ref", .string("#/$defs/\(ProtoJSON.typeLabel(parameter.type))"))]
        Self.define(parameter.type, pool: pool, into: &definitions)
      }
      // `null` is "not set" (proto3's JSON mapping): an optional parameter takes it, and then its default.
      if !parameter.required || parameter.defaultJSON != nil {
        schema = [.init("anyOf", .array([.object(schema), .object([.init("type", .string("null"))])]))]
      }
      if !parameter.description.isEmpty { schema.append(.init("description", .string(parameter.description))) }
      if let defaultJSON = parameter.defaultJSON, let value = try? JSONValue(parsing: defaultJSON) {
        schema.append(.init("default", value))
      }
      properties.append(.init(parameter.name, .object(schema)))
    }
    let required = parameters.filter { $0.required && $0.defaultJSON == nil }.map { JSONValue.string($0.name) }
    return .object([
      .init("$schema", .string("https://json-schema.org/draft/2020-12/schema")),
      .init("title", .string(title)),
      .init("type", .string("object")),
      .init("properties", .object(properties)),
      .init("required", .array(required)),
      .init("additionalProperties", .bool(false)),
      .init("$defs", .object(definitions.values.keys.sorted().map { .init($0, definitions.values[$0]!) })),
    ])
  }

  /// Defines `type` and every message it uses, without recursion: a chain of types thousands
  /// deep (registered by an older version, before depths were bounded) must not overflow the stack.
  static func define(_ type: String, pool: DescriptorPool, into definitions: inout SchemaDefinitions) {
    definitions.pending.append(type)
    while let next = definitions.pending.popLast() {
      defineOne(next, pool: pool, into: &definitions)
    }
  }

  private static func defineOne(_ type: String, pool: DescriptorPool, into definitions: inout SchemaDefinitions) {
    let name = ProtoJSON.typeLabel(type)
    guard definitions.values[name] == nil, let message = pool.message(name) else { return }
    definitions.values[name] = .null  // placeholder: recursive types refer to themselves
    var properties: [JSONValue.Member] = []
    for field in message.field {
      properties.append(.init(field.name, schema(of: field, pool: pool, definitions: &definitions)))
    }
    var members: [JSONValue.Member] = [
      .init("type", .string("object")),
      .init("title", .string(name)),
      .init("properties", .object(properties)),
      .init("additionalProperties", .bool(false)),
    ]
    // Oneofs (not proto3 `optional`'s synthetic ones): at most one field of each group is set.
    // JSON Schema cannot say it without repeating the message per choice, so the groups are an
    // annotation that forms read (`x-oneof`: group → its fields); the validator enforces them.
    var groups: [JSONValue.Member] = []
    for (index, oneof) in message.oneofDecl.enumerated() {
      let fields = message.field.filter { $0.hasOneofIndex && $0.oneofIndex == index && !$0.proto3Optional }
      guard !fields.isEmpty else { continue }
      groups.append(.init(oneof.name, .array(fields.map { .string($0.name) })))
    }
    if !groups.isEmpty { members.append(.init("x-oneof", .object(groups))) }
    definitions.values[name] = .object(members)
  }

  static func schema(
    of field: Google_Protobuf_FieldDescriptorProto, pool: DescriptorPool, definitions: inout SchemaDefinitions
  ) -> JSONValue {
    if let entry = pool.mapEntry(of: field), let valueField = entry.field.first(where: { $0.number == 2 }) {
      return .object([
        .init("type", .string("object")),
        .init("additionalProperties", single(valueField, pool: pool, definitions: &definitions)),
      ])
    }
    let item = single(field, pool: pool, definitions: &definitions)
    guard field.label == .repeated else { return item }
    return .object([.init("type", .string("array")), .init("items", item)])
  }

  static func single(
    _ field: Google_Protobuf_FieldDescriptorProto, pool: DescriptorPool, definitions: inout SchemaDefinitions
  ) -> JSONValue {
    func integer(_ minimum: String, _ maximum: String) -> JSONValue {
      .object([
        .init("type", .string("integer")), .init("minimum", .number(minimum)), .init("maximum", .number(maximum)),
      ])
    }
    func integer64(_ pattern: String) -> JSONValue {
      .object([
        .init(
          "oneOf",
          .array([
            .object([.init("type", .string("integer"))]),
            .object([.init("type", .string("string")), .init("pattern", .string(pattern))]),
          ]))
      ])
    }
    switch field.type {
    case .string: return .object([.init("type", .string("string"))])
    case .bytes: return .object([.init("type", .string("string")), .init("contentEncoding", .string("base64"))])
    case .bool: return .object([.init("type", .string("boolean"))])
    case .int32, .sint32, .sfixed32: return integer("-2147483648", "2147483647")
    case .uint32, .fixed32: return integer("0", "4294967295")
    case .int64, .sint64, .sfixed64: return integer64("^-?[0-9]+$")
    case .uint64, .fixed64: return integer64("^[0-9]+$")
    case .float, .double:
      return .object([
        .init(
          "oneOf",
          .array([
            .object([.init("type", .string("number"))]),
            .object([.init("enum", .array([.string("NaN"), .string("Infinity"), .string("-Infinity")]))]),
          ]))
      ])
    case .enum:
      let values = pool.enumType(field.typeName)?.value ?? []
      return .object([
        .init("enum", .array(values.map { .string($0.name) } + values.map { .number(String($0.number)) }))
      ])
    case .message, .group:
      if let wellKnown = wellKnownSchema(ProtoJSON.typeLabel(field.typeName)) { return wellKnown }
      // Defined by ``define(_:pool:into:)``'s loop, not here.
      definitions.pending.append(field.typeName)
      return .object([.init("$ref", .string("#/$defs/\(ProtoJSON.typeLabel(field.typeName))"))])
    @unknown default:
      return .object([])
    }
  }

  /// The schema of a well-known type's JSON form (proto3 JSON mapping), or nil for other types.
  static func wellKnownSchema(_ name: String) -> JSONValue? {
    func object(_ members: [(String, JSONValue)]) -> JSONValue { .object(members.map { .init($0.0, $0.1) }) }
    switch name {
    case "google.protobuf.Timestamp":
      // What protobuf's Timestamp holds, narrower than RFC 3339: years 0001 to 9999, an upper-case
      // T and Z, and offsets of at most 13 hours (SwiftProtobuf's reading of the JSON mapping).
      return object([
        ("type", .string("string")), ("format", .string("date-time")),
        (
          "pattern",
          .string(
            "^(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$"
          )
        ),
      ])
    case "google.protobuf.Duration":
      return object([("type", .string("string")), ("pattern", .string("^-?[0-9]+(\\.[0-9]{1,9})?s$"))])
    case "google.protobuf.Struct": return object([("type", .string("object"))])
    case "google.protobuf.ListValue": return object([("type", .string("array"))])
    case "google.protobuf.Value": return object([])
    case "google.protobuf.Empty":
      return object([("type", .string("object")), ("additionalProperties", .bool(false))])
    case "google.protobuf.FieldMask": return object([("type", .string("string"))])
    case "google.protobuf.BoolValue": return object([("type", .array([.string("boolean"), .string("null")]))])
    case "google.protobuf.StringValue", "google.protobuf.BytesValue":
      return object([("type", .array([.string("string"), .string("null")]))])
    case "google.protobuf.DoubleValue", "google.protobuf.FloatValue":
      return object([("type", .array([.string("number"), .string("null")]))])
    case "google.protobuf.Int32Value", "google.protobuf.UInt32Value":
      return object([("type", .array([.string("integer"), .string("null")]))])
    case "google.protobuf.Int64Value", "google.protobuf.UInt64Value":
      return object([("type", .array([.string("integer"), .string("string"), .string("null")]))])
    default: return nil
    }
  }
}

extension DescriptorPool {
  /// The JSON Schemas of the messages `types` and of every message they use, by full name: the
  /// proto3 JSON mapping with proto field names (references are `#/$defs/NAME`).
  package func jsonSchemas(of types: [String]) -> [String: JSONValue] {
    var definitions = SchemaDefinitions()
    for type in types { ParameterSet.define(type, pool: self, into: &definitions) }
    return definitions.values
  }
}

/// Message schemas by full name while they are being made, and the types still to define.
struct SchemaDefinitions {
  var values: [String: JSONValue] = [:]
  var pending: [String] = []
}
