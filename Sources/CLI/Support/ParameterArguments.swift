import Flows
import Foundation
import GPSModel

/// Parameters from the command line, in the forms Prefect users know:
/// `--param NAME=VALUE` (repeatable; VALUE is JSON, and a bare word is a string) and
/// `--params JSON`, `--params @file.json` or `--params -` (standard input). `--param` wins over
/// `--params` for the same name.
enum ParameterArguments {
  static func assemble(
    params: [String], paramsArgument: String? = nil,
    readFile: (String) throws -> String = readTextFile,
    readStandardInput: () throws -> String = readStandardInputText
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
          code: .invalidParameter, message: "--params \(argument): cannot read it (\(error))",
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
      // VALUE is JSON; a bare word that does not parse as JSON is taken as a plain string. What
      // starts like JSON (an object, an array, a quoted string) and does not parse is a mistake,
      // not a string: say where it breaks.
      let value: JSONValue
      do {
        value = try JSONValue(parsing: text)
      } catch {
        let start = text.drop { $0 == " " || $0 == "\t" || $0 == "\n" }.first
        guard let start, ["{", "[", "\""].contains(start) else {
          members.removeAll { $0.key == name }
          members.append(JSONValue.Member(name, .string(text)))
          continue
        }
        throw FlowsError(code: .invalidParameter, message: "--param \(name): not valid JSON: \(error)", cause: error)
      }
      members.removeAll { $0.key == name }
      members.append(JSONValue.Member(name, value))
    }
    return .object(members)
  }
}

/// Input that is not UTF-8 (JSON must be).
struct InvalidUTF8: Error, CustomStringConvertible {
  var description: String { "it is not valid UTF-8" }
}

/// Standard input as UTF-8 text: not String(decoding:), which would turn invalid UTF-8 into
/// U+FFFD and store that.
func readStandardInputText() throws -> String {
  guard let text = String(data: FileHandle.standardInput.readDataToEndOfFile(), encoding: .utf8) else {
    throw InvalidUTF8()
  }
  return text
}

/// Why a file could not be read, as one short phrase (not Foundation's NSCocoaErrorDomain text).
struct FileReadError: Error, CustomStringConvertible {
  var description: String
}

/// The UTF-8 text of the file at `path`; a failure says why in a few words.
func readTextFile(_ path: String) throws -> String {
  var isDirectory: ObjCBool = false
  guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
    throw FileReadError(description: "no such file")
  }
  guard !isDirectory.boolValue else { throw FileReadError(description: "it is a directory, not a file") }
  guard FileManager.default.isReadableFile(atPath: path), let data = FileManager.default.contents(atPath: path) else {
    throw FileReadError(description: "permission denied, or it cannot be read")
  }
  guard let text = String(data: data, encoding: .utf8) else { throw InvalidUTF8() }
  return text
}
