// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
  .swiftLanguageMode(.v6),
  .enableUpcomingFeature("ExistentialAny"),
  .enableUpcomingFeature("InternalImportsByDefault"),
  .enableUpcomingFeature("MemberImportVisibility"),
]

let grpcCore = Target.Dependency.product(name: "GRPCCore", package: "grpc-swift-2")
let grpcNIO = Target.Dependency.product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport")
let grpcProtobuf = Target.Dependency.product(name: "GRPCProtobuf", package: "grpc-swift-protobuf")
let swiftProtobuf = Target.Dependency.product(name: "SwiftProtobuf", package: "swift-protobuf")
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let lifecycle = Target.Dependency.product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
let unixSignals = Target.Dependency.product(name: "UnixSignals", package: "swift-service-lifecycle")
let crypto = Target.Dependency.product(name: "Crypto", package: "swift-crypto")
let coreMetrics = Target.Dependency.product(name: "CoreMetrics", package: "swift-metrics")
let prometheus = Target.Dependency.product(name: "Prometheus", package: "swift-prometheus")
let heap = Target.Dependency.product(name: "HeapModule", package: "swift-collections")
let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")
let hummingbird = Target.Dependency.product(name: "Hummingbird", package: "hummingbird")
let postgres = Target.Dependency.product(name: "PostgresNIO", package: "postgres-nio")
let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
let nioPosix = Target.Dependency.product(name: "NIOPosix", package: "swift-nio")
let nioSSL = Target.Dependency.product(name: "NIOSSL", package: "swift-nio-ssl")
let hummingbirdTLS = Target.Dependency.product(name: "HummingbirdTLS", package: "hummingbird")

let package = Package(
  name: "gps",
  platforms: [.macOS(.v15)],
  products: [
    .executable(name: "gps", targets: ["CLI"]),
    .executable(name: "gps-bench", targets: ["GPSBench"]),
    // The worker SDK: what a package of one's own flows depends on (`import GPS`). No storage.
    .library(name: "GPS", targets: ["GPS"]),
    // The server engine, for embedding it: the log, the queue, the control service and the web UI.
    .library(name: "GPSServer", targets: ["Queue", "PostgresStore", "Control", "Web"]),
    // Testing flows and workers: a manual clock, temporary directories, waits, captured logs.
    .library(name: "GPSTesting", targets: ["GPSTesting"]),
  ],
  dependencies: [
    .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
    .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
    .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
    .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
    .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
    .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    // The web UI and its JSON API; without its optional traits (swift-configuration, full Foundation).
    .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
    // The log on PostgreSQL (`--store postgres://…`): several servers, one leader.
    .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
  ],
  targets: [
    // liblz4 from the system (Debian liblz4-dev), used by the event log for batch compression.
    .systemLibrary(
      name: "CLZ4",
      pkgConfig: "liblz4",
      providers: [.apt(["liblz4-dev"])]
    ),
    // jemalloc from the system (Debian libjemalloc-dev), linked into the executables only: it
    // replaces the C library's malloc, whose arena locks the gRPC and Swift concurrency threads
    // contend on when one thread frees what another allocated.
    .systemLibrary(
      name: "CJemalloc",
      pkgConfig: "jemalloc",
      providers: [.apt(["libjemalloc-dev"])]
    ),
    // SQLite from the system (Debian libsqlite3-dev): the run index, a derived, rebuildable view of
    // the log's terminal runs on disk.
    .systemLibrary(
      name: "CSQLite",
      pkgConfig: "sqlite3",
      providers: [.apt(["libsqlite3-dev"])]
    ),
    // CRC32C with the SSE4.2 instruction where available: the log's batch checksum at memory speed.
    .target(name: "CCRC32C"),
    .target(
      name: "RPC",
      dependencies: [grpcCore, grpcNIO, grpcProtobuf, swiftProtobuf, logging, lifecycle, crypto],
      swiftSettings: swiftSettings
    ),
    // Services A and B, their protos and clients: the reference flow's services, not the engine's.
    .target(
      name: "Services",
      dependencies: ["RPC", grpcCore, grpcNIO, grpcProtobuf, swiftProtobuf, logging, lifecycle, crypto],
      swiftSettings: swiftSettings
    ),
    // `server-flow`, written against the engine's public API like any user's flow.
    .target(
      name: "ReferenceFlow",
      dependencies: ["Flows", "Services", "RPC", "GPSModel", "Queue", grpcCore, swiftProtobuf],
      swiftSettings: swiftSettings
    ),
    // What the worker SDK and the server share: runs, events and the control API's messages and
    // stubs. No storage, no server.
    .target(
      name: "GPSModel",
      dependencies: [grpcCore, grpcProtobuf, swiftProtobuf],
      swiftSettings: swiftSettings
    ),
    .target(
      name: "Queue",
      dependencies: ["GPSModel", "CLZ4", "CCRC32C", "CSQLite", swiftProtobuf, heap, logging, crypto, coreMetrics],
      swiftSettings: swiftSettings
    ),
    // The log's batches, the leader's lease and the servers' registry in PostgreSQL; the segment
    // files of a server's data directory become a local copy of the batches committed there.
    .target(
      name: "PostgresStore",
      dependencies: ["Queue", "GPSModel", postgres, nioCore, nioPosix, nioSSL, logging],
      swiftSettings: swiftSettings
    ),
    .target(name: "GPS", dependencies: ["Flows", "GPSModel", "RPC"], swiftSettings: swiftSettings),
    .target(
      name: "Flows",
      dependencies: ["GPSModel", "RPC", grpcCore, grpcNIO, swiftProtobuf, logging, lifecycle, unixSignals, crypto],
      swiftSettings: swiftSettings
    ),
    .target(
      name: "Control",
      dependencies: [
        "RPC", "GPSModel", "Queue", "PostgresStore", "Flows", grpcCore, grpcNIO, grpcProtobuf, swiftProtobuf,
        logging, lifecycle, unixSignals,
      ],
      swiftSettings: swiftSettings
    ),
    // The web UI, its JSON API and /metrics, served beside the control API by `gps server start`.
    .target(
      name: "Web",
      dependencies: [
        "Control", "Flows", "GPSModel", "Queue", "RPC", hummingbird, hummingbirdTLS, grpcCore, swiftProtobuf, logging,
        coreMetrics, prometheus,
      ],
      resources: [.embedInCode("Assets/app.js"), .embedInCode("Assets/app.css")],
      swiftSettings: swiftSettings
    ),
    .executableTarget(
      name: "CLI",
      dependencies: [
        "CJemalloc", "RPC", "Services", "ReferenceFlow", "Flows", "GPSModel", "Queue", "PostgresStore", "Control",
        "Web",
        argumentParser,
        grpcCore,
        grpcNIO,
        swiftProtobuf, logging,
        lifecycle,
        unixSignals,
      ],
      swiftSettings: swiftSettings
    ),
    .executableTarget(
      name: "GPSBench",
      dependencies: [
        "CJemalloc", "GPSModel", "Queue", "Flows", "RPC", "Services", "ReferenceFlow", "Control", "Web",
        "GPSServerTesting", "GPSTesting", "PostgresStore",
        argumentParser, swiftProtobuf,
        grpcCore, grpcNIO, logging,
      ],
      path: "Benchmarks/GPSBench",
      swiftSettings: swiftSettings
    ),
    // The fuzz targets: `make fuzz` builds this with libFuzzer (-sanitize=fuzzer -D FUZZING); built
    // plainly, it runs inputs once (a crash's, a corpus) and writes the seed corpora.
    .executableTarget(
      name: "GPSFuzz",
      dependencies: ["GPSModel", "Queue", "Flows", "Web", swiftProtobuf],
      path: "Fuzz/GPSFuzz",
      swiftSettings: swiftSettings
    ),
    // The example worker (Examples/inventory-worker, an outside package with a Package.swift of
    // its own) built in this build too, so that `make test` does not build every dependency a
    // second time. Without package access it sees only GPS's public API, as it does when its own
    // package builds it.
    .executableTarget(
      name: "InventoryWorker",
      dependencies: ["GPS", grpcCore, grpcNIO, grpcProtobuf, swiftProtobuf],
      path: "Examples/inventory-worker/Sources/InventoryWorker",
      packageAccess: false,
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
    // The testing product: a manual clock, temporary directories and waits for tests of flows
    // and workers. GPSServerTesting, for the engine's tests and benchmarks in this package: a file
    // system that fails on cue, a history generator and services A and B in-process.
    .target(
      name: "GPSTesting",
      dependencies: ["GPSModel", logging],
      swiftSettings: swiftSettings
    ),
    .target(
      name: "GPSServerTesting",
      dependencies: [
        "GPSTesting", "GPSModel", "Queue", "RPC", "Services", grpcCore, logging, lifecycle, swiftProtobuf,
        "PostgresStore",
      ],
      swiftSettings: swiftSettings
    ),
    // Only GPS's own tests: the `gps` binary as a process, raw sockets, an HTTP client of the web UI.
    .target(
      name: "GPSTestSupport",
      dependencies: ["GPSTesting", "GPSServerTesting"],
      path: "Tests/GPSTestSupport",
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "RPCTests",
      dependencies: [
        "RPC", "Services", "GPSTestSupport", grpcCore, grpcNIO, swiftProtobuf, logging, lifecycle, crypto,
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "StoreTests",
      dependencies: ["GPSModel", "Queue", "PostgresStore", "GPSTestSupport", postgres, logging],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "QueueTests",
      dependencies: [
        "GPSModel", "Queue", "PostgresStore", "GPSTestSupport", crypto, swiftProtobuf,
        .product(name: "MetricsTestKit", package: "swift-metrics"),
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "FlowsTests",
      dependencies: [
        "Flows", "RPC", "Services", "ReferenceFlow", "GPSModel", "Queue", "Control", "GPSTestSupport", grpcCore,
        grpcNIO,
        swiftProtobuf, logging,
      ],
      swiftSettings: swiftSettings
    ),
    // The control API in-process: the service over grpc-swift's in-process transport, no process.
    .testTarget(
      name: "ControlTests",
      dependencies: [
        "Control", "Flows", "GPSModel", "Queue", "RPC", "ReferenceFlow", "Services", "GPSTestSupport", grpcCore,
        .product(name: "GRPCInProcessTransport", package: "grpc-swift-2"), swiftProtobuf, logging,
      ],
      swiftSettings: swiftSettings
    ),
    // The web UI and its API in-process: requests straight to the router, no process, no port.
    .testTarget(
      name: "WebTests",
      dependencies: [
        "Web", "Control", "Flows", "GPSModel", "Queue", "RPC", "ReferenceFlow", "Services", "GPSTestSupport",
        hummingbird,
        .product(name: "HummingbirdTesting", package: "hummingbird"), swiftProtobuf, logging,
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "CLITests",
      dependencies: [
        "CLI", "Control", "Web", "GPSModel", "Queue", "RPC", "Services", "ReferenceFlow", "Flows", "GPSTestSupport",
        "GPSFuzz",
        grpcCore,
        grpcNIO,
        swiftProtobuf, crypto,
      ],
      swiftSettings: swiftSettings
    ),
  ]
)
