// swift-tools-version:6.1
// An outside package serving its own flow with GPS: it depends on GPS's library product only,
// as any user's package would (`.package(url: "https://github.com/…/gps", from: "…")`).
import PackageDescription

let package = Package(
  name: "inventory-worker",
  platforms: [.macOS(.v15)],
  dependencies: [
    .package(name: "gps", path: "../.."),
    .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
    .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
    .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
    .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
  ],
  targets: [
    .executableTarget(
      name: "InventoryWorker",
      dependencies: [
        .product(name: "GPS", package: "gps"),
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
        .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      swiftSettings: [.swiftLanguageMode(.v6)]
    )
  ]
)
