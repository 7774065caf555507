// swift-tools-version: 6.1
// The example at the top of GradAccum's design document, as a package that depends on
// GradAccum. Run from this folder: `swift run`.
import PackageDescription

let package = Package(
  name: "DesignExample",
  dependencies: [.package(name: "GradAccum", path: "../..")],
  targets: [
    .executableTarget(
      name: "DesignExample",
      dependencies: [.product(name: "GradAccum", package: "GradAccum")])
  ]
)
