import Flows
import GPSModel
import Testing

@testable import CLI

/// `--param` and `--params` as the CLI reads them (the libraries take JSON, not flags).
@Suite struct ParameterArgumentsTests {
  @Test func paramAndParamsFormsCombine() throws {
    let snippet = try ParameterArguments.assemble(
      params: [#"data_info={"object_storage_urls": ["a"], "dataset": "b"}"#])
    #expect(snippet.text == #"{"data_info":{"object_storage_urls":["a"],"dataset":"b"}}"#)
    #expect(
      try ParameterArguments.assemble(params: ["name=word", "n=5", "s=\"5\""]).text == #"{"name":"word","n":5,"s":"5"}"#
    )
    let merged = try ParameterArguments.assemble(
      params: ["b=2"], paramsArgument: #"{"a": 1, "b": 1}"#)
    #expect(merged.text == #"{"a":1,"b":2}"#)
    let file = try ParameterArguments.assemble(
      params: [], paramsArgument: "@p.json",
      readFile: { path in
        #expect(path == "p.json")
        return #"{"data_info": {}}"#
      })
    #expect(file.text == #"{"data_info":{}}"#)
    let stdin = try ParameterArguments.assemble(params: [], paramsArgument: "-", readStandardInput: { #"{"x": true}"# })
    #expect(stdin.text == #"{"x":true}"#)
  }

  @Test(
    arguments: [
      (["nonsense"], nil, "--param nonsense: expected NAME=VALUE"),
      (["=1"], nil, "--param =1: expected NAME=VALUE"),
      ([], "[1]", "--params: expected a JSON object of parameters"),
      ([], "{", "--params: not valid JSON: the JSON ends inside an object at line 1, column 2"),
    ] as [([String], String?, String)])
  func badArgumentsAreNamed(params: [String], paramsArgument: String?, expected: String) {
    let error = #expect(throws: FlowsError.self) {
      try ParameterArguments.assemble(params: params, paramsArgument: paramsArgument)
    }
    #expect(error?.message.hasPrefix(expected) == true, "\(error?.message ?? "")")
  }

  @Test func anUnreadableParamsFileIsNamed() {
    struct Missing: Error {}
    let error = #expect(throws: FlowsError.self) {
      try ParameterArguments.assemble(params: [], paramsArgument: "@nope.json", readFile: { _ in throw Missing() })
    }
    #expect(error?.message.hasPrefix("--params @nope.json: cannot read it") == true)
  }
}
