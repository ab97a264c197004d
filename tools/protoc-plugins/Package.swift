// swift-tools-version:6.1
// Builds the protoc plugins used by `make proto` from the same package versions the project uses,
// so generated code is reproducible. Not part of the main build.
import PackageDescription

let package = Package(
  name: "protoc-plugins",
  dependencies: [
    .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
    .package(url: "https://github.com/grpc/grpc-swift-protobuf", exact: "2.4.1"),
  ],
  targets: []
)
