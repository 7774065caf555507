import Benchmark
import GradAccum

/// One epoch of 2048 samples with target batch 256 through `Trainer.fit` (planning done,
/// measurement, guard, bookkeeping) against a hand-written accumulation loop over the same
/// micro-batches (gather, forward, scaled loss, backward, optimizer step), without and with
/// the trainer's peak measurement.
let benchmarks: @Sendable () -> Void = {
  Benchmark.defaultConfiguration = .init(
    metrics: [.wallClock, .throughput, .mallocCountTotal], maxDuration: .seconds(5), maxIterations: 200)
  let specification = try! ModelSpecification(parsing: "linear(784,512) relu linear(512,512) relu linear(512,10)")
  var generator = RandomGenerator(seed: 1)
  let inputs = Tensor(uniformShape: [2048, 784], low: 0, high: 1, generator: &generator)
  let dataset = TensorDataset(inputs: inputs, targets: Tensor((0..<2048).map { Float($0 % 10) }, shape: [2048]))

  var options = TrainerOptions()
  options.shuffle = false
  let trainer = try! Trainer(
    model: specification.build(seed: 1), optimizer: try! SGD(learningRate: 0.01), loss: .crossEntropy, targetBatch: 256,
    memoryBudget: .mb(9), options: options)
  // One epoch first, so that the loop below copies the plan the trainer settles on (the
  // benchmark harness's malloc interposer adds bytes the planner does not predict, and
  // the memory guard lowers the micro-batch once).
  _ = try! trainer.fit(dataset, epochs: 1)
  let microBatch = trainer.plan.microBatch
  let sizes = trainer.plan.windowSizes
  // The hand-written loop trains the trainer's own model and optimizer: the same buffers at
  // the same addresses (where buffers sit moves sgemm's speed by more than the trainer costs).
  let stepper = WindowStepper(model: trainer.model, optimizer: trainer.optimizer, loss: .crossEntropy)

  func handWrittenEpoch(measuringPeaks: Bool = false) {
    var start = 0
    while start < dataset.count {
      var offset = start
      for size in sizes {
        let indices = Array(offset..<(offset + size))
        if measuringPeaks {
          blackHole(TransientPeak.measure { stepper.microStep(dataset.batch(at: indices), windowItems: 256) })
        } else {
          stepper.microStep(dataset.batch(at: indices), windowItems: 256)
        }
        offset += size
      }
      blackHole(stepper.finishWindow())
      start += 256
    }
  }

  // The two alternate, epoch by epoch, and each pair gives a ratio: drifts of the machine's
  // speed hit both sides of a pair alike.
  let ratio = BenchmarkMetric.custom("Trainer.fit time / hand-written time (per mille)", useScalingFactor: false)
  Benchmark(
    "overhead, interleaved pairs", configuration: .init(metrics: [ratio], maxDuration: .seconds(10), maxIterations: 60)
  ) { benchmark in
    // Each side goes first in every other pair: whatever runs first after the harness's
    // pause also wakes OpenBLAS's sleeping threads.
    let clock = ContinuousClock()
    var trainerTime = Duration.zero, loopTime = Duration.zero
    for trainerFirst in [true, false] {
      if trainerFirst {
        trainerTime += try clock.measure { blackHole(try trainer.fit(dataset, epochs: trainer.completedEpochs + 1)) }
        loopTime += clock.measure { handWrittenEpoch() }
      } else {
        loopTime += clock.measure { handWrittenEpoch() }
        trainerTime += try clock.measure { blackHole(try trainer.fit(dataset, epochs: trainer.completedEpochs + 1)) }
      }
    }
    benchmark.measurement(ratio, Int((trainerTime / loopTime * 1000).rounded()))
  }

  Benchmark("hand-written loop, 1 epoch, target batch 256, same micro-batches") { benchmark in
    for _ in benchmark.scaledIterations { handWrittenEpoch() }
  }

  Benchmark("hand-written loop with peak measurement") { benchmark in
    for _ in benchmark.scaledIterations { handWrittenEpoch(measuringPeaks: true) }
  }

  Benchmark("Trainer.fit, 1 epoch, target batch 256, micro-batch \(microBatch)") { benchmark in
    for _ in benchmark.scaledIterations {
      // Each iteration trains one more epoch of the same trainer.
      blackHole(try trainer.fit(dataset, epochs: trainer.completedEpochs + 1))
    }
  }
}
