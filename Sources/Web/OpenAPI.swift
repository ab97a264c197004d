import Flows
import GPSModel

/// The OpenAPI 3.1 document of the web API (`/api/openapi.json`). Its schemas of the control API's
/// messages are generated from their descriptors, by the same generator as the parameter forms,
/// so they say exactly what the answers hold.
enum OpenAPI {
  static let document: JSONValue = build()

  /// The document of a server whose registered deployments (their newest versions) are
  /// `deployments`: an enqueue is one of them with parameters that its own JSON Schema allows
  /// (the same schema the run form is made from), so a client that generates requests from the
  /// document can make valid ones.
  static func document(deployments: [(name: String, parameters: JSONValue)]) -> JSONValue {
    guard !deployments.isEmpty else { return document }
    var added: [(String, JSONValue)] = []
    var choices: [JSONValue] = []
    for (name, schema) in deployments {
      let key = "Parameters." + String(name.map { $0.isLetter || $0.isNumber || "-_.".contains($0) ? $0 : "." })
      guard case .object(let members) = schema else { continue }
      var own: [JSONValue.Member] = []
      for member in members where member.key != "$schema" {
        if member.key == "$defs", case .object(let definitions) = member.value {
          for definition in definitions {
            added.append(
              (
                key + "." + definition.key,
                nullableFields(exclusiveOneofs(relocated(definition.value, prefix: key + ".")))
              )
            )
          }
        } else {
          own.append(.init(member.key, relocated(member.value, prefix: key + ".")))
        }
      }
      added.append((key, .object(own)))
      let needsParameters = own.contains { member in
        if member.key == "required", case .array(let names) = member.value { return !names.isEmpty }
        return false
      }
      choices.append(
        object([
          (
            "properties",
            object([("deployment", object([("const", .string(name))])), ("parameters", ref(key))])
          ),
          (
            "required", .array((needsParameters ? ["deployment", "parameters"] : ["deployment"]).map(JSONValue.string))
          ),
        ]))
    }
    var result = updating(document, at: ["components", "schemas", "EnqueueRequest"]) {
      guard case .object(var members) = $0 else { return $0 }
      members.append(.init("oneOf", .array(choices)))
      return .object(members)
    }
    result = updating(result, at: ["components", "schemas"]) {
      guard case .object(var members) = $0 else { return $0 }
      members += added.map { JSONValue.Member($0.0, $0.1) }
      return .object(members)
    }
    return result
  }

  /// A message schema whose fields may also be null, as proto3's JSON mapping allows (null is the
  /// field's default).
  static func nullableFields(_ schema: JSONValue) -> JSONValue {
    updating(schema, at: ["properties"]) { properties in
      guard case .object(let fields) = properties else { return properties }
      return .object(
        fields.map { .init($0.key, object([("anyOf", .array([$0.value, object([("type", .string("null"))])]))])) })
    }
  }

  /// A message schema whose `x-oneof` groups (an annotation) are also said in JSON Schema: no two
  /// fields of a group are both present.
  static func exclusiveOneofs(_ schema: JSONValue) -> JSONValue {
    guard case .object(var members) = schema,
      let groups = members.first(where: { $0.key == "x-oneof" }), case .object(let byGroup) = groups.value
    else { return schema }
    var pairs: [JSONValue] = []
    for group in byGroup {
      guard case .array(let fields) = group.value else { continue }
      for (index, first) in fields.enumerated() {
        for second in fields.dropFirst(index + 1) {
          pairs.append(object([("required", .array([first, second]))]))
        }
      }
    }
    if !pairs.isEmpty { members.append(.init("not", object([("anyOf", .array(pairs))]))) }
    return .object(members)
  }

  /// `value` with the member at `path` (keys of nested objects) changed by `change`.
  static func updating(_ value: JSONValue, at path: [String], _ change: (JSONValue) -> JSONValue) -> JSONValue {
    guard let key = path.first else { return change(value) }
    guard case .object(var members) = value, let index = members.firstIndex(where: { $0.key == key }) else {
      return value
    }
    members[index].value = updating(members[index].value, at: Array(path.dropFirst()), change)
    return .object(members)
  }

  static let pool: DescriptorPool = (try? DescriptorPool(base64: embeddedDescriptorSet)) ?? .empty

  static func object(_ members: [(String, JSONValue)]) -> JSONValue {
    .object(members.map { .init($0.0, $0.1) })
  }

  static func ref(_ name: String) -> JSONValue { object([("$ref", .string("#/components/schemas/\(name)"))]) }

  /// What names, tags and keys may not hold (EventLimits): control characters and the marks that
  /// reorder text.
  static let namePattern =
    "^[^\\u0000-\\u001F\\u007F-\\u009F\\u200E\\u200F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069\\uFEFF]*$"

  static func string(_ description: String = "") -> JSONValue {
    description.isEmpty
      ? object([("type", .string("string"))])
      : object([("type", .string("string")), ("description", .string(description))])
  }

  /// `#/$defs/X` references rewritten to components (`PREFIX` + X: a deployment's own types are
  /// kept apart from the control API's and from other deployments').
  static func relocated(_ value: JSONValue, prefix: String = "") -> JSONValue {
    switch value {
    case .object(let members):
      return .object(
        members.map { member in
          if member.key == "$ref", case .string(let target) = member.value, target.hasPrefix("#/$defs/") {
            return .init("$ref", .string("#/components/schemas/" + prefix + target.dropFirst("#/$defs/".count)))
          }
          return .init(member.key, relocated(member.value, prefix: prefix))
        })
    case .array(let values): return .array(values.map { relocated($0, prefix: prefix) })
    default: return value
    }
  }

  static func parameter(_ name: String, in place: String, _ schema: JSONValue, _ description: String)
    -> JSONValue
  {
    object([
      ("name", .string(name)), ("in", .string(place)), ("required", .bool(place == "path")), ("schema", schema),
      ("description", .string(description)),
    ])
  }

  static func json(_ schema: JSONValue, _ description: String) -> JSONValue {
    object([
      ("description", .string(description)),
      ("content", object([("application/json", object([("schema", schema)]))])),
    ])
  }

  /// `response` with links from `field` of its body (a run id) to the operations on that run.
  static func linkingRun(_ response: JSONValue, at field: String) -> JSONValue {
    guard case .object(var members) = response else { return response }
    let links = ["getRun", "runEvents", "cancelRun", "retryRun"].map { operation in
      (
        operation,
        object([
          ("operationId", .string(operation)),
          ("parameters", object([("id", .string("$response.body#\(field)"))])),
        ])
      )
    }
    members.append(.init("links", object(links)))
    return .object(members)
  }

  static let errorResponse = json(ref("Error"), "the request was refused: the code and one line saying why")

  static func operation(
    _ id: String, _ summary: String, parameters: [JSONValue] = [], body: JSONValue? = nil,
    bodyRequired: Bool = true, responses: [(String, JSONValue)]
  ) -> JSONValue {
    var members: [(String, JSONValue)] = [("operationId", .string(id)), ("summary", .string(summary))]
    if !parameters.isEmpty { members.append(("parameters", .array(parameters))) }
    if let body {
      members.append(
        (
          "requestBody",
          object([
            ("required", .bool(bodyRequired)), ("content", object([("application/json", object([("schema", body)]))])),
          ])
        ))
    }
    var answers = responses
    for status in ["400", "401", "403", "404", "409", "503"] where !answers.contains(where: { $0.0 == status }) {
      answers.append((status, errorResponse))
    }
    answers.append(("500", errorResponse))
    members.append(("responses", object(answers)))
    return object(members)
  }

  /// State names as the filter takes them, in any case, comma-separated.
  static let statePattern: String = {
    let names = [
      "Scheduled", "Late", "AwaitingRetry", "Pending", "Running", "Retrying", "Cancelling", "Cancelled", "Completed",
      "Cached", "Failed", "TimedOut", "Crashed",
    ]
    let anyCase = names.map { name in
      name.map { "[\($0.lowercased())\($0.uppercased())]" }.joined()
    }
    let one = "(" + anyCase.joined(separator: "|") + ")"
    return "^(\(one)(,\(one))*)?$"
  }()
}
