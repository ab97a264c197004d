import Flows
import Foundation
import GPSModel
import GPSTestSupport
import Queue
import SwiftProtobuf
import Testing

/// The validator and the result decoder working from descriptors alone, as the server does for a
/// worker's types: the well-known types with their JSON forms, scalar parameters, and registered
/// definitions.
@Suite struct RegisteredTypesTests {
  func problems(_ json: String, _ parameters: ParameterSet, pool: DescriptorPool = .all) -> [String] {
    do {
      _ = try parameters.validate(json: json, pool: pool)
      return []
    } catch {
      return error.problems
    }
  }

  @Test func wellKnownTypesTakeTheirProto3JSONForms() throws {
    let parameters = ParameterSet([
      ParameterSpec(name: "at", type: "google.protobuf.Timestamp"),
      ParameterSpec(name: "wait", type: "google.protobuf.Duration"),
      ParameterSpec(name: "extra", type: "google.protobuf.Struct"),
      ParameterSpec(name: "count", type: "google.protobuf.Int64Value"),
    ])
    let validated = try parameters.validate(
      json: #"{"at": "2026-12-01T12:00:00Z", "wait": "1.5s", "extra": {"a": [1, "b"]}, "count": "7"}"#,
      pool: .empty)
    let at = try Google_Protobuf_Timestamp(serializedBytes: validated.value(of: "at")!)
    #expect(at.seconds == 1_796_126_400)
    let wait = try Google_Protobuf_Duration(serializedBytes: validated.value(of: "wait")!)
    #expect(wait.seconds == 1 && wait.nanos == 500_000_000)
    #expect(try Google_Protobuf_Int64Value(serializedBytes: validated.value(of: "count")!).value == 7)
    #expect(validated.json.contains(#""at":"2026-12-01T12:00:00Z""#), "\(validated.json)")
    let bad = problems(#"{"at": "yesterday", "wait": 5, "extra": [], "count": "x"}"#, parameters, pool: .empty)
    #expect(
      bad == [
        #"at: expected an RFC 3339 timestamp string such as "2026-12-01T12:00:00Z", got the string "yesterday""#,
        #"wait: expected a duration string in seconds such as "1.5s", got the number 5"#,
        "extra: expected a JSON object, got an array",
        #"count: expected an integer (int64), got the string "x""#,
      ], "\(bad)")
  }

  @Test func scalarParametersValidateAndDecodeAsTheirSwiftTypes() throws {
    let parameters = ParameterSet([
      ParameterSpec(name: "name", type: "string"), ParameterSpec(name: "count", type: "int64"),
      ParameterSpec(name: "ratio", type: "double"), ParameterSpec(name: "dry", type: "bool"),
      ParameterSpec(name: "tags", type: "repeated string"), ParameterSpec(name: "sizes", type: "repeated int64"),
    ])
    let validated = try parameters.validate(
      json: #"{"name": "x", "count": "12", "ratio": 0.5, "dry": true, "tags": ["a", "b"], "sizes": [1, 300]}"#,
      pool: .empty)
    func value(_ name: String) -> [UInt8] { validated.value(of: name)! }
    #expect(String(parameterBytes: value("name")) == "x")
    #expect(Int64(parameterBytes: value("count")) == 12)
    #expect(Double(parameterBytes: value("ratio")) == 0.5)
    #expect(Bool(parameterBytes: value("dry")) == true)
    #expect([String](parameterBytes: value("tags")) == ["a", "b"])
    #expect([Int64](parameterBytes: value("sizes")) == [1, 300])
    #expect(
      problems(
        #"{"name": 1, "count": 1.5, "ratio": "x", "dry": 1, "tags": "a", "sizes": ["q"]}"#, parameters, pool: .empty)
        == [
          "name: expected a string, got the number 1", "count: expected an integer (int64), got the number 1.5",
          #"ratio: expected a number (double), got the string "x""#,
          "dry: expected a boolean (true or false), got the number 1",
          #"tags: expected an array of string, got the string "a""#,
          #"sizes[0]: expected an integer (int64), got the string "q""#,
        ])
    let schema = parameters.jsonSchema(title: "t", pool: .empty).text
    #expect(schema.contains(#""tags":{"type":"array","items":{"type":"string"}}"#), "\(schema)")
  }

  /// Every scalar type a deployment may declare decodes as its Swift type, singly and as a list
  /// (numbers packed, as the validator writes them), with the edges of each range.
  @Test func everyScalarTypeDecodesSinglyAndAsAList() throws {
    let types = ["string", "bytes", "int64", "int32", "uint64", "uint32", "double", "float", "bool"]
    let parameters = ParameterSet(
      types.flatMap { [ParameterSpec(name: $0, type: $0), ParameterSpec(name: "\($0)s", type: "repeated \($0)")] })
    let validated = try parameters.validate(
      json: #"""
        {"string": "é", "strings": ["", "b"], "bytes": "AAH/", "bytess": ["", "AQ=="],
         "int64": "-9223372036854775808", "int64s": [-1, "9223372036854775807", 0],
         "int32": -5, "int32s": [-2147483648, 2147483647],
         "uint64": "18446744073709551615", "uint64s": [0, "18446744073709551615"],
         "uint32": 4294967295, "uint32s": [1, 4294967295],
         "double": -0.5, "doubles": [1e300, -2.25], "float": 0.25, "floats": [1.5, -3],
         "bool": true, "bools": [true, false, true]}
        """#, pool: .empty)
    func value(_ name: String) -> [UInt8] { validated.value(of: name)! }
    #expect(String(parameterBytes: value("string")) == "é")
    #expect([String](parameterBytes: value("strings")) == ["", "b"])
    #expect(Data(parameterBytes: value("bytes")) == Data([0, 1, 255]))
    #expect([Data](parameterBytes: value("bytess")) == [Data(), Data([1])])
    #expect(Int64(parameterBytes: value("int64")) == .min)
    #expect([Int64](parameterBytes: value("int64s")) == [-1, .max, 0])
    #expect(Int32(parameterBytes: value("int32")) == -5)
    #expect([Int32](parameterBytes: value("int32s")) == [.min, .max])
    #expect(UInt64(parameterBytes: value("uint64")) == .max)
    #expect([UInt64](parameterBytes: value("uint64s")) == [0, .max])
    #expect(UInt32(parameterBytes: value("uint32")) == .max)
    #expect([UInt32](parameterBytes: value("uint32s")) == [1, .max])
    #expect(Double(parameterBytes: value("double")) == -0.5)
    #expect([Double](parameterBytes: value("doubles")) == [1e300, -2.25])
    #expect(Float(parameterBytes: value("float")) == 0.25)
    #expect([Float](parameterBytes: value("floats")) == [1.5, -3])
    #expect(Bool(parameterBytes: value("bool")) == true)
    #expect([Bool](parameterBytes: value("bools")) == [true, false, true])
    // The wrong type, and bytes that are no record, decode as nothing rather than as garbage.
    #expect(Double(parameterBytes: value("int32")) == nil)
    #expect(String(parameterBytes: [0x0A, 0x05, 0x61]) == nil)
    // Unpacked numbers (another encoder's choice) decode too.
    #expect([Int64](parameterBytes: [0x08, 0x01, 0x08, 0x02]) == [1, 2])
  }

  @Test func aRegisteredDefinitionValidatesAndDecodesWithItsOwnDescriptors() throws {
    // The descriptors travel in the definition: the validator needs nothing linked.
    var definition = DeploymentDefinition()
    definition.name = "events/replay"
    definition.flow = "events"
    definition.parameters = [
      .with {
        $0.name = "e"
        $0.type = "gps.v1.Event"
        $0.required = true
      }
    ]
    definition.descriptorSet = DescriptorPool.all.descriptorSet(for: ["gps.v1.Event"])
    let set = try Google_Protobuf_FileDescriptorSet(serializedBytes: definition.descriptorSet)
    #expect(set.file.map(\.name) == ["gps/v1/events.proto"])
    let registered = try RegisteredDeployment(
      DeploymentVersion(
        definition: definition, version: 3, registeredAt: .zero, worker: "w", registeredBy: "x", sequence: 1))
    try registered.checkTypes()
    let request = try registered.enqueueRequest(parametersJSON: #"{"e": {"failed": {"reason": "r"}, "runEvent": 2}}"#)
    #expect(request.deploymentVersion == 3)
    let event = try RunEvent(serializedBytes: request.parameters[0].value)
    #expect(event.runEvent == 2)
    let decoded = registered.descriptors.json(of: request.parameters[0].value, type: "gps.v1.Event")
    #expect(decoded?.text == #"{"run_event":2,"failed":{"reason":"r"}}"#, "\(decoded?.text ?? "nil")")
    // A type the set lacks is found at registration.
    definition.parameters[0].type = "gps.v1.Nope"
    let lacking = try RegisteredDeployment(
      DeploymentVersion(
        definition: definition, version: 1, registeredAt: .zero, worker: "w", registeredBy: "x", sequence: 1))
    #expect(throws: FlowsError.self) { try lacking.checkTypes() }
  }

  @Test(arguments: 0..<200)
  func resultsDecodeToWhatSwiftProtobufWrites(seed: Int) throws {
    var random = SplitMix(state: UInt64(seed))
    var event = RunEvent()
    event.timeMicros = Int64.random(in: -1_000_000...Int64.max / 2, using: &random)
    event.runEvent = UInt32.random(in: 0...1000, using: &random)
    event.runID = Data((0..<16).map { _ in UInt8.random(in: 0...255, using: &random) })
    event.attemptFailed = .with {
      $0.step = "s\(seed)"
      $0.statusCode = Int32.random(in: -5...20, using: &random)
      $0.retryable = Bool.random(using: &random)
      $0.durationMicros = Int64.random(in: -5...5_000_000, using: &random)
    }
    var options = JSONEncodingOptions()
    options.preserveProtoFieldNames = true
    let expected = try JSONValue(parsing: try event.jsonString(options: options))
    let decoded = DescriptorPool.all.json(of: try event.serializedBytes(), type: "gps.v1.Event")
    #expect(decoded == expected, "\(decoded?.text ?? "nil") vs \(expected.text)")
  }
}
