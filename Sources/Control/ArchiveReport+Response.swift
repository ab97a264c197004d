package import GPSModel
package import Queue

extension Gps_V1_ArchiveLogResponse {
  package init(_ report: ArchiveReport) {
    self.init()
    segments = report.segments
    firstArchived = report.archived?.lowerBound ?? 0
    lastArchived = report.archived?.upperBound ?? 0
    bytes = report.bytes
    logStart = report.logStart
    noteSequence = report.noteSequence ?? 0
    stoppedBecause = report.stoppedBecause ?? ""
  }
}
