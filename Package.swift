// swift-tools-version: 6.1
import PackageDescription

let package = Package(
  name: "GradAccum",
  products: [
    // MARK: - Public API
    .library(name: "GradAccum", targets: ["GradAccum"]),
    .executable(name: "gradaccum", targets: ["gradaccum"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    // `swift package generate-documentation` (DocC); no target depends on it.
    .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
  ],
  targets: [
    // MARK: - Public API
    .target(
      name: "GradAccum",
      dependencies: [
        "Tensors", "NeuralNetwork", "Optimizers", "DataLoading", "Memory", "Checkpoints",
        "Accumulation", "Planning", "Training", "DataParallel",
      ]),
    .executableTarget(
      name: "gradaccum",
      dependencies: [
        "GradAccum", .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      exclude: ["Resources/README.md"],
      resources: [.copy("Resources/digits.csv"), .copy("Resources/fortunes-computers.txt")]),

    // MARK: - Modules
    .target(name: "Tensors", dependencies: ["CBLAS", "VectorKernels"]),
    .target(name: "NeuralNetwork", dependencies: ["Tensors"]),
    .target(name: "Optimizers", dependencies: ["Tensors", "NeuralNetwork"]),
    .target(name: "DataLoading", dependencies: ["Tensors", "Memory"]),
    .target(name: "Memory", dependencies: ["CJemalloc", "AllocationHooks", "JemallocConfiguration", "SanitizerDefaults"]),
    .target(name: "DataParallel", dependencies: ["CMPI", "Tensors", "Memory"]),
    .target(name: "Checkpoints", dependencies: ["Tensors", "NeuralNetwork", "Memory"]),
    .target(
      name: "Accumulation",
      dependencies: ["Tensors", "NeuralNetwork", "Optimizers", "DataLoading", "Memory"]),
    .target(
      name: "Planning",
      dependencies: ["Tensors", "NeuralNetwork", "Optimizers", "DataLoading", "Memory", "Accumulation"]),
    .target(
      name: "Training",
      dependencies: [
        "Tensors", "NeuralNetwork", "Optimizers", "DataLoading", "Memory", "Checkpoints", "Accumulation", "Planning",
        "DataParallel",
      ]),

    // MARK: - Implementation details
    .target(name: "AllocationHooks"),
    .target(name: "VectorKernels", cSettings: [.unsafeFlags(["-O2"])]),
    .target(name: "JemallocConfiguration"),
    .target(name: "SanitizerDefaults"),
    .systemLibrary(
      name: "CJemalloc", pkgConfig: "jemalloc",
      providers: [.apt(["libjemalloc-dev"])]),
    .systemLibrary(
      name: "CBLAS", pkgConfig: "openblas",
      providers: [.apt(["libopenblas-dev"])]),
    .systemLibrary(
      name: "CMPI", pkgConfig: "ompi-c",
      providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
    .target(name: "_TestSupport", dependencies: ["Tensors", "Memory"], path: "Tests/_TestSupport"),

    // MARK: - Tests
    .testTarget(name: "TensorsTests", dependencies: ["Tensors", "_TestSupport"]),
    .testTarget(name: "NeuralNetworkTests", dependencies: ["NeuralNetwork", "_TestSupport"]),
    .testTarget(name: "OptimizersTests", dependencies: ["Optimizers", "_TestSupport"]),
    .testTarget(name: "DataLoadingTests", dependencies: ["DataLoading", "_TestSupport"]),
    .testTarget(name: "MemoryTests", dependencies: ["Memory", "_TestSupport"]),
    .testTarget(name: "CheckpointsTests", dependencies: ["Checkpoints", "_TestSupport"]),
    .testTarget(name: "TrainingTests", dependencies: ["GradAccum", "_TestSupport"]),
    .testTarget(name: "PlanningTests", dependencies: ["GradAccum", "_TestSupport"]),
    .testTarget(name: "CommandLineTests", dependencies: ["gradaccum", "_TestSupport"]),
  ]
)
