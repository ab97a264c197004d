package import CoreMetrics
import GPSModel
import Prometheus
import Queue

/// The metrics of one server, served on `/metrics` in Prometheus's text format: the queue and
/// its log report to ``factory`` (set it as the queue's ``QueueOptions/metrics``), and the
/// registry behind it is emitted. Each server has its own registry, so servers in one process
/// (tests) do not mix their figures, and nothing depends on a process-wide bootstrap.
package struct WebMetrics: Sendable {
  let registry = PrometheusCollectorRegistry()

  package init() {}

  package var factory: any MetricsFactory {
    var factory = PrometheusMetricsFactory(registry: registry)
    factory.durationHistogramBuckets = QueueMetrics.durationBuckets
    factory.valueHistogramBuckets = QueueMetrics.valueBuckets
    return factory
  }

  /// The exposition text, with the gauges brought up to date from `queue` and a `# HELP` line
  /// before each metric's `# TYPE` line (swift-metrics has no place for help texts).
  func exposition(of queue: RunQueue) -> String {
    queue.updateGauges()
    var text = ""
    for line in registry.emitToString().split(separator: "\n", omittingEmptySubsequences: false) {
      if line.hasPrefix("# TYPE ") {
        let name = line.dropFirst("# TYPE ".count).prefix { $0 != " " }
        if let help = QueueMetrics.help[String(name)] { text += "# HELP \(name) \(help)\n" }
      }
      text += line
      text += "\n"
    }
    while text.hasSuffix("\n\n") { text.removeLast() }
    return text
  }
}
