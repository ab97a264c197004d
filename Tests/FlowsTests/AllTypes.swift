import Flows
import Foundation
import GPSModel

extension DescriptorPool {
  /// Every proto of the repository (protos/gps.desc, written by `make proto`): the validator's
  /// tests use messages of the log and the control API as rich examples.
  static let all: DescriptorPool = {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent()
    let data = try! Data(contentsOf: root.appendingPathComponent("protos/gps.desc"))
    return try! DescriptorPool(descriptorSet: data)
  }()
}

extension ParameterSet {
  func validate(json text: String) throws(FlowsError) -> ValidatedParameters { try validate(json: text, pool: .all) }

  func jsonSchema(title: String) -> JSONValue { jsonSchema(title: title, pool: .all) }
}
