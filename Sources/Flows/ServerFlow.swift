public import RPC

/// The reference flow `server-flow`: its parameter `data_info` is a `gps.v1.DataInfo`.
public enum ServerFlow {
  public static let name = "server-flow"
  public static let parameterName = "data_info"
  /// The parameters from the Prefect snippet; service A finds object `a` in the shipped sample store.
  public static let sampleDataInfoJSON = #"{"object_storage_urls": ["a"], "dataset": "b"}"#

  /// Decodes the `data_info` parameter from JSON.
  public static func decodeDataInfo(_ json: String) throws(FlowsError) -> Gps_V1_DataInfo {
    try ParameterJSON.decode(
      Gps_V1_DataInfo.self, from: json, parameter: parameterName, example: sampleDataInfoJSON)
  }
}
