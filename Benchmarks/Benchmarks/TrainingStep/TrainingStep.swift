import Benchmark
import GradAccum

/// One training micro-step (forward, backward, SGD step) of
/// `linear(784,512) relu linear(512,512) relu linear(512,10)` with cross-entropy, per
/// micro-batch size. Samples per second = operations per second × micro-batch.
let benchmarks: @Sendable () -> Void = {
  Benchmark.defaultConfiguration = .init(
    metrics: [.wallClock, .throughput, .mallocCountTotal], maxDuration: .seconds(3), maxIterations: 5000)
  for microBatch in [1, 4, 16, 64, 256] {
    // Built once, so every sample measures steady-state steps (gradient buffers exist).
    let model = try! ModelSpecification(parsing: "linear(784,512) relu linear(512,512) relu linear(512,10)").build(
      seed: 1)
    let optimizer = try! SGD(learningRate: 0.01)
    var generator = RandomGenerator(seed: 2)
    let inputs = Tensor(uniformShape: [microBatch, 784], low: 0, high: 1, generator: &generator)
    let labels = (0..<microBatch).map { $0 % 10 }
    Benchmark("training step, micro-batch \(microBatch)") { benchmark in
      for _ in benchmark.scaledIterations {
        let loss = crossEntropy(logits: model(inputs), labels: labels)
        loss.backward()
        optimizer.update(model.parameters)
        optimizer.zeroGradients(model.parameters)
        blackHole(loss)
      }
    }
  }
}
