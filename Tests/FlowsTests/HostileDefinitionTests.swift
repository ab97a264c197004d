import Flows
import Foundation
import GPSModel
import GPSTestSupport
import Queue
import SwiftProtobuf
import Testing

/// Definitions a hostile or careless worker registers: each is refused at registration with one
/// line naming what and the limit, and what older versions let into the log renders without
/// exhausting the stack.
@Suite struct HostileDefinitionTests {
  /// A file of `count` messages, `hostile.M0` … each with a field of the next: a chain `count` deep.
  static func chain(_ count: Int) -> Data {
    var file = Google_Protobuf_FileDescriptorProto()
    file.name = "hostile.proto"
    file.package = "hostile"
    file.syntax = "proto3"
    for index in 0..<count {
      var message = Google_Protobuf_DescriptorProto()
      message.name = "M\(index)"
      if index + 1 < count {
        message.field = [
          .with {
            $0.name = "next"
            $0.number = 1
            $0.type = .message
            $0.label = .optional
            $0.typeName = ".hostile.M\(index + 1)"
          }
        ]
      }
      file.messageType.append(message)
    }
    return try! Google_Protobuf_FileDescriptorSet.with { $0.file = [file] }.serializedBytes()
  }

  static func definition(
    type: String = "hostile.M0", descriptors: Data = chain(2), defaultJSON: String = "", name: String = "p"
  ) -> DeploymentDefinition {
    .with {
      $0.name = "hostile/d"
      $0.flow = "hostile"
      $0.steps = [.with { $0.name = "s" }]
      $0.descriptorSet = descriptors
      $0.parameters = [
        .with {
          $0.name = name
          $0.type = type
          $0.required = false
          $0.defaultJson = defaultJSON
        }
      ]
    }
  }

  func refusal(_ definition: DeploymentDefinition) -> String? {
    do {
      try RegisteredDeployment.check(definition)
      return nil
    } catch {
      return error.message
    }
  }

  /// 40,000 messages deep overflowed the stack of every walk (rc 139 at each restart). Refused at
  /// registration naming the limit; a chain at the limit is accepted.
  @Test func aTypeNestedBeyondTheLimitIsRefusedAndOneAtTheLimitIsAccepted() {
    let deep = refusal(Self.definition(descriptors: Self.chain(40_000)))
    #expect(deep?.contains("nests messages more than 64 deep") == true, "\(deep ?? "accepted")")
    #expect(refusal(Self.definition(descriptors: Self.chain(64))) == nil)
    #expect(refusal(Self.definition(descriptors: Self.chain(65)))?.contains("more than 64 deep") == true)
  }

  /// What an older version registered renders: schemas and descriptor sets are made without
  /// recursion (this test overflowed the stack before).
  @Test func aDeepTypeAlreadyInTheLogRendersItsSchema() throws {
    let pool = try DescriptorPool(descriptorSet: Self.chain(40_000))
    let schema = ParameterSet([ParameterSpec(name: "p", type: "hostile.M0")]).jsonSchema(title: "t", pool: pool)
    guard case .object(let members) = schema,
      case .object(let definitions)? = members.first(where: { $0.key == "$defs" })?.value
    else {
      Issue.record("no $defs")
      return
    }
    #expect(definitions.count == 40_000)
    #expect(!schema.text.isEmpty)
    #expect(!pool.descriptorSet(for: ["hostile.M0"]).isEmpty)
  }

  @Test func referencesToNothingAreRefused() {
    var file = Google_Protobuf_FileDescriptorProto()
    file.name = "hostile.proto"
    file.package = "hostile"
    file.dependency = ["missing.proto"]
    file.messageType = [
      .with {
        $0.name = "M0"
        $0.field = [
          .with {
            $0.name = "ghost"
            $0.number = 1
            $0.type = .message
            $0.typeName = ".missing.Ghost"
          }
        ]
      }
    ]
    let set = try! Google_Protobuf_FileDescriptorSet.with { $0.file = [file] }.serializedBytes() as Data
    let message = refusal(Self.definition(descriptors: set))
    #expect(
      message?.contains("field hostile.M0.ghost is of type missing.Ghost, which the descriptor set does not hold")
        == true, "\(message ?? "accepted")")
    var result = Self.definition()
    result.resultType = "hostile.Nothing"
    #expect(refusal(result)?.contains("the result type hostile.Nothing is not in its descriptor set") == true)
  }

  @Test func aDefaultThatIsNotJSONOrDoesNotValidateIsRefused() {
    let notJSON = refusal(Self.definition(type: "int64", defaultJSON: "{not json"))
    #expect(notJSON?.contains("parameter p: its default is not JSON") == true, "\(notJSON ?? "accepted")")
    let wrongType = refusal(Self.definition(type: "int64", defaultJSON: #""seven""#))
    #expect(wrongType?.contains("parameter p: its default does not validate") == true, "\(wrongType ?? "accepted")")
    #expect(refusal(Self.definition(type: "int64", defaultJSON: "7")) == nil)
  }

  /// A Struct's fields in any order give the same bytes and the same canonical JSON: the log's
  /// record of a run, and what an idempotency key compares (make fuzz found them differ).
  @Test func aStructsCanonicalFormDoesNotDependOnTheOrderItWasWritten() throws {
    let parameters = ParameterSet([ParameterSpec(name: "extra", type: "google.protobuf.Struct")])
    let keys = (0..<40).map { "k\($0)" }
    func validated(_ order: [String]) throws -> ValidatedParameters {
      let members = order.map { #""\#($0)": [1, "\#($0)", {"n": null}]"# }.joined(separator: ", ")
      return try parameters.validate(json: #"{"extra": {\#(members)}}"#, pool: .empty)
    }
    let forward = try validated(keys)
    for order in [Array(keys.reversed()), keys.shuffled(), keys.shuffled()] {
      let other = try validated(order)
      #expect(other.json == forward.json)
      #expect(other.typed == forward.typed)
    }
  }

  /// `null` is "not set" (proto3 JSON): a parameter's default applies, and its JSON keeps it.
  @Test func anExplicitNullTakesTheDefault() throws {
    let parameters = ParameterSet([ParameterSpec(name: "count", type: "int64", required: false, defaultJSON: "7")])
    let validated = try parameters.validate(json: #"{"count": null}"#, pool: .empty)
    #expect(validated.json == #"{"count":"7"}"# || validated.json == #"{"count":7}"#, "\(validated.json)")
    // The schema says the same: null or the type, and the default.
    let schema = parameters.jsonSchema(title: "t", pool: .empty).text
    #expect(
      schema.contains(#""count":{"anyOf":[{"oneOf":"#) && schema.contains(#"{"type":"null"}],"default":7}"#),
      "\(schema)")
    let required = ParameterSet([ParameterSpec(name: "count", type: "int64")])
    #expect(throws: FlowsError.self) { try required.validate(json: #"{"count": null}"#, pool: .empty) }
  }

  /// Names that would forge a log line, hide their text direction or collide, and counts beyond
  /// the limits: refused by the queue with one line, nothing written.
  @Test(arguments: [
    ("hostile/d\nINFO forged", "contains U+000A"), ("hostile/d\u{202E}", "contains U+202E"),
    ("hostile/d\0", "contains U+0000"),
  ])
  func namesWithControlOrDirectionCharactersAreRefused(name: String, expected: String) async throws {
    try await withTemporaryDirectory { directory in
      let queue = try RunQueue(directory: directory.path)
      defer { queue.close() }
      var definition = Self.definition(type: "int64")
      definition.name = name
      definition.flow = String(name.split(separator: "/").first!)
      let error = await #expect(throws: QueueError.self) {
        try await queue.register([definition], worker: "w", by: "test")
      }
      #expect(error?.message.contains(expected) == true, "\(error?.message ?? "")")
      #expect(queue.durableSequence == 0)
    }
  }

  @Test func duplicateAndTooManyParametersAreRefused() async throws {
    try await withTemporaryDirectory { directory in
      let queue = try RunQueue(directory: directory.path)
      defer { queue.close() }
      var twice = Self.definition(type: "int64")
      twice.parameters.append(twice.parameters[0])
      let duplicate = await #expect(throws: QueueError.self) { try await queue.register([twice], worker: "w", by: "t") }
      #expect(duplicate?.message.contains("parameter p: two parameters have this name") == true)
      var many = Self.definition(type: "int64")
      many.parameters = (0..<20_000).map { index in
        .with {
          $0.name = "p\(index)"; $0.type = "int64"
        }
      }
      let tooMany = await #expect(throws: QueueError.self) { try await queue.register([many], worker: "w", by: "t") }
      #expect(
        tooMany?.message.contains("20000 is out of range; it lies between 0 and 1000") == true,
        "\(tooMany?.message ?? "")")
      var nan = Self.definition(type: "int64")
      nan.steps[0].jitter = .nan
      let jitter = await #expect(throws: QueueError.self) { try await queue.register([nan], worker: "w", by: "t") }
      #expect(jitter?.message.contains("jitter") == true)
      #expect(queue.durableSequence == 0)
    }
  }
}
