import Benchmark
import GradAccum

/// What planning costs: building the estimator (one warm-up trace) and searching for the
/// largest micro-batch, for `linear(784,512) relu linear(512,512) relu linear(512,10)`.
let benchmarks: @Sendable () -> Void = {
  Benchmark.defaultConfiguration = .init(
    metrics: [.wallClock, .throughput, .mallocCountTotal], maxDuration: .seconds(3), maxIterations: 10_000)
  let specification = try! ModelSpecification(parsing: "linear(784,512) relu linear(512,512) relu linear(512,10)")
  let model = ShapeTracing.run(AllocationTrace()) { specification.build(seed: 0) }

  Benchmark("plan, target batch 4096, budget 64 MiB") { benchmark in
    for _ in benchmark.scaledIterations {
      let estimator = try MemoryEstimator(model: model, sampleShape: [784], loss: .crossEntropy, optimizer: try Adam())
      blackHole(try Planner.plan(estimator: estimator, targetBatch: 4096, budget: .mb(64), datasetSize: 60_000))
    }
  }

  let estimator = try! MemoryEstimator(model: model, sampleShape: [784], loss: .crossEntropy, optimizer: try! Adam())
  Benchmark("predict A(m), m = 100000") { benchmark in
    for _ in benchmark.scaledIterations { blackHole(estimator.transientBytes(microBatch: 100_000)) }
  }
}
