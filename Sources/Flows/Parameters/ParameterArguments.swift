public import Foundation

/// Parameters from the command line, in the forms Prefect users know:
/// `--param NAME=VALUE` (repeatable; VALUE is JSON, and a bare word is a string) and
/// `--params JSON`, `--params @file.json` or `--params -` (standard input). `--param` wins over
/// `--params` for the same name.
public enum ParameterArguments {
  public static func assemble(
    params: [String], paramsArgument: String? = nil,
    readFile: (String) throws -> String = { try String(contentsOfFile: $0, encoding: .utf8) },
    readStandardInput: () throws -> String = {
      String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
    }
  ) throws(FlowsError) -> JSONValue {
    var members: [JSONValue.Member] = []
    if let argument = paramsArgument {
      let text: String
      let source: String
      do {
        if argument == "-" {
          text = try readStandardInput()
          source = "--params - (standard input)"
        } else if argument.hasPrefix("@") {
          text = try readFile(String(argument.dropFirst()))
          source = "--params \(argument)"
        } else {
          text = argument
          source = "--params"
        }
      } catch {
        throw FlowsError(
          code: .invalidParameter, message: "--params \(argument): cannot read it (\(error.localizedDescription))",
          cause: error)
      }
      let value: JSONValue
      do {
        value = try JSONValue(parsing: text)
      } catch {
        throw FlowsError(code: .invalidParameter, message: "\(source): not valid JSON: \(error)", cause: error)
      }
      guard case .object(let given) = value else {
        throw FlowsError(
          code: .invalidParameter,
          message:
            "\(source): expected a JSON object of parameters such as {\"data_info\": {…}}, got \(value.described)")
      }
      members = given
    }
    for param in params {
      guard let equals = param.firstIndex(of: "="), equals != param.startIndex else {
        throw FlowsError(
          code: .invalidParameter,
          message: "--param \(param): expected NAME=VALUE, e.g. --param data_info='{\"dataset\": \"b\"}'")
      }
      let name = String(param[..<equals])
      let text = String(param[param.index(after: equals)...])
      // VALUE is JSON; anything that does not parse as JSON is taken as a plain string.
      let value = (try? JSONValue(parsing: text)) ?? .string(text)
      members.removeAll { $0.key == name }
      members.append(JSONValue.Member(name, value))
    }
    return .object(members)
  }
}
