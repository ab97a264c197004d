import Flows
import Foundation
import GPSModel
import Queue
import RPC
import ReferenceFlow
import Services
import SwiftProtobuf
import Testing

let serverFlowParameters = ParameterSet([ParameterSpec(name: "data_info", type: "gps.v1.DataInfo")])

func problems(_ json: String, _ parameters: ParameterSet = serverFlowParameters) -> [String] {
  do {
    _ = try parameters.validate(json: json)
    return []
  } catch {
    return error.problems
  }
}

@Suite struct ParameterValidationTests {
  @Test func theSnippetsParametersBecomeATypedDataInfo() throws {
    let validated = try serverFlowParameters.validate(
      json: #"{"data_info": {"object_storage_urls": ["a"], "dataset": "b"}}"#)
    let typed = try #require(validated.typed.first)
    #expect(typed.name == "data_info" && typed.type == "gps.v1.DataInfo")
    let message = try Gps_V1_DataInfo(serializedBytes: typed.value)
    #expect(message.objectStorageUrls == ["a"] && message.dataset == "b")
    #expect(typed.value == (try message.serializedBytes() as [UInt8]))
    #expect(validated.json == #"{"data_info":{"object_storage_urls":["a"],"dataset":"b"}}"#)
  }

  @Test func lowerCamelNamesAreAcceptedAndCanonicalised() throws {
    let validated = try serverFlowParameters.validate(json: #"{"data_info": {"objectStorageUrls": ["x", "y"]}}"#)
    #expect(validated.json == #"{"data_info":{"object_storage_urls":["x","y"]}}"#)
    #expect(try Gps_V1_DataInfo(serializedBytes: validated.typed[0].value).objectStorageUrls == ["x", "y"])
  }

  @Test(arguments: [
    (
      #"{"data_info": {"object_storage_urls": ["a"], "dataset": 5}}"#,
      ["data_info.dataset: expected a string, got the number 5"]
    ),
    (
      #"{"data_info": {"object_storage_url": ["a"], "dataset": "b"}}"#,
      ["data_info.object_storage_url: unknown field; did you mean object_storage_urls?"]
    ),
    (#"{}"#, ["missing required parameter data_info"]),
    (
      #"{"datainfo": {"dataset": "b"}}"#,
      [#"unknown parameter "datainfo"; this deployment takes: data_info"#, "missing required parameter data_info"]
    ),
    (
      #"{"data_info": {"object_storage_urls": ["a", 3, true], "dataset": ["b"], "extra": 1}}"#,
      [
        "data_info.object_storage_urls[1]: expected a string, got the number 3",
        "data_info.object_storage_urls[2]: expected a string, got the boolean true",
        "data_info.dataset: expected a string, got an array",
        "data_info.extra: unknown field; gps.v1.DataInfo has: object_storage_urls, dataset",
      ]
    ),
    (#"{"data_info": "a"}"#, [#"data_info: expected an object (gps.v1.DataInfo), got the string "a""#]),
    (
      #"{"data_info": {"object_storage_urls": "a"}}"#,
      [#"data_info.object_storage_urls: expected an array of string, got the string "a""#]
    ),
    (#"[1]"#, [#"the parameters must be a JSON object such as {"data_info": …}, got an array"#]),
    (
      #"{"data_info": {"dataset": 'b'}}"#,
      ["the parameters are not valid JSON: JSON strings use double quotes, not single quotes at line 1, column 27"]
    ),
    (
      #"{"data_info": {"dataset": "b"}"#,
      ["the parameters are not valid JSON: the JSON ends inside an object at line 1, column 31"]
    ),
  ])
  func everyProblemIsReportedWithItsPath(json: String, expected: [String]) {
    #expect(problems(json) == expected)
  }

  @Test func numbersAreCheckedAgainstTheirFieldTypes() throws {
    let manifest = ParameterSet([ParameterSpec(name: "m", type: "gps.v1.Manifest")])
    let ok = try manifest.validate(json: #"{"m": {"object_count": 3, "total_bytes": "18446744073709551615"}}"#)
    let decoded = try Gps_V1_Manifest(serializedBytes: ok.typed[0].value)
    #expect(decoded.objectCount == 3 && decoded.totalBytes == UInt64.max)
    #expect(
      problems(#"{"m": {"object_count": -1}}"#, manifest) == [
        "m.object_count: -1 is out of range for uint32 (0 to 4294967295)"
      ])
    #expect(
      problems(#"{"m": {"object_count": 1.5}}"#, manifest) == [
        "m.object_count: expected an integer (uint32), got the number 1.5"
      ])
    #expect(
      problems(#"{"m": {"total_bytes": "x"}}"#, manifest) == [
        #"m.total_bytes: expected an integer (uint64), got the string "x""#
      ])
  }

  /// Cross-check with SwiftProtobuf: random events (nested messages, oneofs, int64, uint32, bool,
  /// bytes, repeated messages) written as JSON by SwiftProtobuf validate into the same bytes.
  @Test func randomMessagesMatchSwiftProtobufByteForByte() throws {
    var random = SystemRandomNumberGenerator()
    let events = ParameterSet([ParameterSpec(name: "e", type: "gps.v1.Event")])
    func text() -> String {
      String((0..<Int.random(in: 0...6, using: &random)).map { _ in "aé€z\"\\\n".randomElement()! })
    }
    for _ in 0..<300 {
      var event = RunEvent()
      event.timeMicros = Int64.random(in: Int64.min...Int64.max, using: &random)
      event.runID = Data((0..<Int.random(in: 0...16, using: &random)).map { _ in UInt8.random(in: 0...255) })
      event.runEvent = UInt32.random(in: 0...UInt32.max, using: &random)
      switch Int.random(in: 0..<4, using: &random) {
      case 0:
        event.kind = .enqueued(
          .with {
            $0.deployment = text()
            $0.parameters = (0..<Int.random(in: 0...2, using: &random)).map { _ in
              .with {
                $0.name = text()
                $0.value = Data([UInt8.random(in: 0...255)])
              }
            }
            $0.tags = (0..<Int.random(in: 0...3, using: &random)).map { _ in text() }
            $0.priority = Int32.random(in: Int32.min...Int32.max, using: &random)
            $0.crashPolicy.maxRequeues = UInt32.random(in: 0...5, using: &random)
          })
      case 1:
        event.kind = .attemptFailed(
          .with {
            $0.step = text()
            $0.statusCode = Int32.random(in: -5...20, using: &random)
            $0.retryable = Bool.random(using: &random)
          })
      case 2: event.kind = .started(.init())
      default: event.kind = .completed(.with { $0.cached = Bool.random(using: &random) })
      }
      let json = try event.jsonString()
      let validated = try events.validate(json: #"{"e": \#(json)}"#)
      #expect(validated.typed[0].value == (try event.serializedBytes() as [UInt8]), "\(json)")
    }
  }

  @Test func theJSONSchemaDescribesTheParameters() throws {
    let schema = serverFlowParameters.jsonSchema(title: "server-flow/MyPrefectDeployer")
    let text = schema.text
    #expect(text.contains(#""$schema":"https://json-schema.org/draft/2020-12/schema""#))
    #expect(text.contains(#""required":["data_info"]"#))
    #expect(text.contains(##""data_info":{"$ref":"#/$defs/gps.v1.DataInfo"}"##))
    #expect(
      text.contains(
        #""gps.v1.DataInfo":{"type":"object","title":"gps.v1.DataInfo","properties":{"object_storage_urls":{"type":"array","items":{"type":"string"}},"dataset":{"type":"string"}},"additionalProperties":false}"#
      ), "\(text)")
    // It is itself valid JSON.
    #expect(try JSONValue(parsing: schema.prettyText) == schema)
  }
}
