import CJemalloc

/// Which malloc serves this process: jemalloc, linked into `gps`, unless something replaced it.
enum Allocator {
  static let description: String = {
    guard let version = gps_jemalloc_version() else { return "the C library's malloc" }
    // "5.3.0-0-g54eaed1d8b56b1aa528be3bdd1877e59c56fa90c": the release is enough.
    return "jemalloc \(String(cString: version).prefix { $0 != "-" })"
  }()
}
