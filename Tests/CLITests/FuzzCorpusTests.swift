import Foundation
import Testing

@testable import GPSFuzz

/// The fuzz targets' committed corpora (seeds, and inputs that once crashed) run clean: a crash
/// that `make fuzz` found stays fixed.
@Suite struct FuzzCorpusTests {
  static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fuzz/corpus")

  @Test(arguments: FuzzTarget.allCases)
  func everyInputOfTheCorpusRunsClean(target: FuzzTarget) throws {
    let folder = Self.corpus.appendingPathComponent(target.rawValue)
    let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
    #expect(!files.isEmpty)
    for file in files { target.run(Array(try Data(contentsOf: folder.appendingPathComponent(file)))) }
  }

  /// The committed seeds are what the generator writes: they change with the formats they cover.
  @Test func theSeedsAreCommitted() throws {
    for (target, seeds) in FuzzSeeds.all() {
      let folder = Self.corpus.appendingPathComponent(target.rawValue)
      for (index, seed) in seeds.enumerated() {
        let committed = try? Data(contentsOf: folder.appendingPathComponent("seed-\(index)"))
        #expect(committed != nil, "\(target) seed-\(index): run gps-fuzz seeds Fuzz/corpus")
      }
    }
  }
}
