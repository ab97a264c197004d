public import GPSModel

/// One parameter of a flow: a name and the protobuf message type its JSON must validate into.
public struct ParameterSpec: Sendable, Hashable {
  public var name: String
  /// Full protobuf message name, e.g. `gps.v1.DataInfo`, or a scalar (``ScalarParameter``):
  /// `string`, `int64`, `int32`, `double`, `bool`, `bytes`, or `repeated` one of them.
  public var type: String
  public var required: Bool
  /// Used when the parameter is not given (JSON), e.g. from a deployment's defaults.
  public var defaultJSON: String?
  public var description: String

  public init(name: String, type: String, required: Bool = true, defaultJSON: String? = nil, description: String = "") {
    self.name = name
    self.type = type
    self.required = required
    self.defaultJSON = defaultJSON
    self.description = description
  }
}

/// Parameters that passed validation: the JSON in canonical form (proto field names, defaults
/// filled in) and each parameter as its typed protobuf message.
public struct ValidatedParameters: Sendable, Hashable {
  public var json: String
  public var typed: [RunParameter]

  public func value(of name: String) -> [UInt8]? { typed.first { $0.name == name }?.value }
}

/// The one validator of a flow's parameters, used when a run is enqueued and again when a
/// scheduler starts it. Reports every problem, each with its path.
public struct ParameterSet: Sendable, Hashable {
  public var parameters: [ParameterSpec]

  public init(_ parameters: [ParameterSpec]) { self.parameters = parameters }

  /// Validates a JSON object of parameters (`{"data_info": {…}}`).
  public func validate(json text: String, pool: DescriptorPool) throws(FlowsError) -> ValidatedParameters {
    let json: JSONValue
    do {
      json = try JSONValue(parsing: text)
    } catch {
      throw FlowsError(code: .invalidParameter, message: "the parameters are not valid JSON: \(error)", cause: error)
    }
    return try validate(json, pool: pool)
  }

  public func validate(_ json: JSONValue, pool: DescriptorPool) throws(FlowsError) -> ValidatedParameters {
    guard case .object(let members) = json else {
      throw FlowsError(
        code: .invalidParameter,
        message:
          "the parameters must be a JSON object such as {\"\(parameters.first?.name ?? "name")\": …}, got \(json.described)"
      )
    }
    var problems: [String] = []
    let names = parameters.map(\.name)
    for member in members where !names.contains(member.key) {
      let takes = names.isEmpty ? "no parameters" : names.joined(separator: ", ")
      problems.append("unknown parameter \(JSONValue.quoted(member.key)); this deployment takes: \(takes)")
    }
    var converter = ProtoJSON(pool: pool)
    var canonical: [JSONValue.Member] = []
    var typed: [RunParameter] = []
    for parameter in parameters {
      var value = members.first { $0.key == parameter.name }?.value
      // `null` is "not set", as proto3's JSON mapping reads it: the default applies.
      if value == nil || value == .null, let defaultJSON = parameter.defaultJSON {
        do {
          value = try JSONValue(parsing: defaultJSON)
        } catch {
          problems.append("\(parameter.name): the deployment's default is not valid JSON: \(error)")
          continue
        }
      }
      guard let value, value != .null else {
        if parameter.required { problems.append("missing required parameter \(parameter.name)") }
        continue
      }
      if let field = ScalarParameterTypes.field(for: parameter.type) {
        if let scalar = converter.field(value, field: field, path: parameter.name) {
          canonical.append(JSONValue.Member(parameter.name, scalar.json))
          typed.append(RunParameter(name: parameter.name, type: parameter.type, value: scalar.bytes))
        }
      } else if let message = converter.message(value, type: parameter.type, path: parameter.name) {
        canonical.append(JSONValue.Member(parameter.name, message.json))
        typed.append(RunParameter(name: parameter.name, type: parameter.type, value: message.bytes))
      }
    }
    problems += converter.problems
    guard problems.isEmpty else {
      throw FlowsError(code: .invalidParameter, message: problems.joined(separator: "; "), problems: problems)
    }
    return ValidatedParameters(json: JSONValue.object(canonical).text, typed: typed)
  }
}
