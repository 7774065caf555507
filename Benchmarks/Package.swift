// swift-tools-version: 6.1
// Benchmarks live in their own package so that users of GradAccum do not pull in the
// benchmark plugin. Run from this folder: `swift package benchmark`.
import PackageDescription

let package = Package(
  name: "GradAccumBenchmarks",
  dependencies: [
    .package(name: "GradAccum", path: ".."),
    .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
  ],
  targets: [
    // MARK: - Suites
    .executableTarget(
      name: "Matmul",
      dependencies: [
        .product(name: "GradAccum", package: "GradAccum"), "CBLASReference",
        .product(name: "Benchmark", package: "benchmark"),
      ],
      path: "Benchmarks/Matmul",
      plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
    .executableTarget(
      name: "TrainingStep",
      dependencies: [
        .product(name: "GradAccum", package: "GradAccum"), .product(name: "Benchmark", package: "benchmark"),
      ],
      path: "Benchmarks/TrainingStep",
      plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
    .executableTarget(
      name: "PlanningCost",
      dependencies: [
        .product(name: "GradAccum", package: "GradAccum"), .product(name: "Benchmark", package: "benchmark"),
      ],
      path: "Benchmarks/PlanningCost",
      plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
    .executableTarget(
      name: "TrainerOverhead",
      dependencies: [
        .product(name: "GradAccum", package: "GradAccum"), .product(name: "Benchmark", package: "benchmark"),
      ],
      path: "Benchmarks/TrainerOverhead",
      plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),

    // MARK: - Implementation details
    .systemLibrary(name: "CBLASReference", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
  ]
)
