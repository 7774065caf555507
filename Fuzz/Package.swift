// swift-tools-version: 6.1
// libFuzzer targets for GradAccum's parsers. Build and run with `scripts/fuzz.sh` (it passes
// `-sanitize=fuzzer,address`, which gives each target libFuzzer's main).
import PackageDescription

let fuzzSettings: [SwiftSetting] = [.unsafeFlags(["-parse-as-library"])]

let package = Package(
  name: "GradAccumFuzz",
  dependencies: [.package(name: "GradAccum", path: "..")],
  targets: [
    .executableTarget(
      name: "FuzzSafetensors", dependencies: [.product(name: "GradAccum", package: "GradAccum"), "CFuzzerDriver"],
      swiftSettings: fuzzSettings),
    .executableTarget(
      name: "FuzzCSV", dependencies: [.product(name: "GradAccum", package: "GradAccum"), "CFuzzerDriver"],
      swiftSettings: fuzzSettings),
    .executableTarget(
      name: "FuzzModelSpecification", dependencies: [.product(name: "GradAccum", package: "GradAccum"), "CFuzzerDriver"],
      swiftSettings: fuzzSettings),
    .executableTarget(
      name: "FuzzBudget", dependencies: [.product(name: "GradAccum", package: "GradAccum"), "CFuzzerDriver"],
      swiftSettings: fuzzSettings),
    .executableTarget(
      name: "FuzzCommandLine", dependencies: [.product(name: "GradAccum", package: "GradAccum"), "CFuzzerDriver"],
      swiftSettings: fuzzSettings),
    .executableTarget(
      name: "FuzzSequences", dependencies: [.product(name: "GradAccum", package: "GradAccum"), "CFuzzerDriver"],
      swiftSettings: fuzzSettings),
    .target(name: "CFuzzerDriver"),
  ]
)
