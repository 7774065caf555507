import Foundation
import GradAccum
import Testing
import _TestSupport

/// The smallest budget whose plan has at least `k` micro-batches per window of `targetBatch`.
func budgetForcing(k: Int, model: Sequential, optimizer: Optimizer, loss: Loss, inputShape: [Int], targetBatch: Int)
  throws -> MemoryBudget
{
  let estimator = try MemoryEstimator(model: model, sampleShape: inputShape, loss: loss, optimizer: optimizer)
  let microBatch = (targetBatch + k - 1) / k
  // The budget just fits a micro-batch of ⌈T/k⌉ after the trainer's 1% margin.
  let peak = estimator.estimate(microBatch: microBatch).peakBytes
  return .bytes(Int(Double(peak + 64) / 0.99) + 1)
}

@Suite("Trainer")
struct TrainerTests {
  static let spec = "linear(16,96) relu linear(96,96) tanh linear(96,5)"

  func reference(_ dataset: TensorDataset, optimizer: () throws -> Optimizer, targetBatch: Int, epochs: Int) throws
    -> [[Float]]
  {
    try train(
      Self.spec, dataset: dataset, loss: .crossEntropy, optimizer: optimizer,
      microBatch: targetBatch, accumulationCount: 1, epochs: epochs
    ).parameters
  }

  @Test(arguments: [(2, "sgd"), (3, "adam"), (4, "adamw")])
  func plannedAccumulationReproducesTheBigBatch(k: Int, optimizerName: String) throws {
    let dataset = classificationData(count: 203, features: 16, classes: 5, seed: 9)
    let makeOptimizer: () throws -> Optimizer = {
      switch optimizerName {
      case "sgd": try SGD(learningRate: 0.05, momentum: 0.9, weightDecay: 0.01)
      case "adam": try Adam(learningRate: 0.01)
      default: try AdamW(learningRate: 0.01)
      }
    }
    let model = try ModelSpecification(parsing: Self.spec).build(seed: 3)
    let optimizer = try makeOptimizer()
    let budget = try budgetForcing(
      k: k, model: model, optimizer: optimizer, loss: .crossEntropy, inputShape: [16], targetBatch: 50)
    var options = TrainerOptions()
    options.shuffle = false
    let trainer = try Trainer(
      model: model, optimizer: optimizer, loss: .crossEntropy, targetBatch: 50, memoryBudget: budget, options: options)
    #expect(trainer.plan.accumulationCount >= k, "\(trainer.plan)")
    let report = try trainer.fit(dataset, epochs: 2)
    #expect(report.budgetViolations == 0)
    #expect(report.maxPeakBytes <= budget.bytes)
    #expect(report.steps == 2 * 5)
    // Accumulation sums in another order; Adam's normalized steps amplify that rounding
    // most, and 1e-4 is the tolerance held against PyTorch as well.
    expectSameParameters(
      model.parameters.map(\.values), try reference(dataset, optimizer: makeOptimizer, targetBatch: 50, epochs: 2),
      relative: optimizerName == "sgd" ? 1e-5 : 1e-4)
  }

  /// When even one sample goes over the budget (here because the estimate is made four
  /// times too small), the run stops with one clear error after that micro-step, writing
  /// its checkpoint, instead of going over again.
  @Test(.measuresMemory) func overshootAtMicroBatchOneStopsTheRun() throws {
    let dataset = classificationData(count: 40, features: 16, classes: 5, seed: 2)
    let model = try ModelSpecification(parsing: Self.spec).build(seed: 3)
    var options = TrainerOptions()
    options.transientEstimateScale = 0.25
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("gradaccum-over-\(UUID()).ckpt").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    options.checkpointPath = path
    let estimator = try MemoryEstimator(
      model: model, sampleShape: [16], loss: .crossEntropy, optimizer: try SGD(learningRate: 0.05))
    estimator.transientScale = 0.25
    // Just enough, by the wrong estimate, for micro-batch 1 with the 1% margin.
    let budget = MemoryBudget.bytes(Int(Double(estimator.estimate(microBatch: 1).peakBytes) / 0.99) + 1)
    let trainer = try Trainer(
      model: model, optimizer: try SGD(learningRate: 0.05), loss: .crossEntropy, targetBatch: 8,
      memoryBudget: budget, options: options)
    #expect(trainer.plan.microBatch == 1)
    do {
      try trainer.fit(dataset, epochs: 1)
      Issue.record("a micro-step of 1 sample went over the budget and training went on")
    } catch {
      guard case .budgetExceeded(_, let peak, let budgetBytes) = error else { Issue.record("\(error)"); return }
      #expect(peak > budgetBytes && budgetBytes == budget.bytes)
      #expect(error.description.contains("a budget of at least") && !error.description.contains("--"))
    }
    #expect(FileManager.default.fileExists(atPath: path))
  }

  /// A wrong estimate (four times too small) makes the first micro-step go over the budget.
  /// No smaller size has been measured yet, so the run stops there, with one violation and
  /// a checkpoint, rather than risk a second. Resumed under the same budget it stops again
  /// before any micro-step (the checkpoint keeps the overshoot); resumed under the budget
  /// the error names,
  /// it ends where a correctly planned run does, nothing lost.
  @Test(.measuresMemory) func guardStopsAfterOneOvershootAndTheRunResumes() throws {
    let dataset = classificationData(count: 130, features: 16, classes: 5, seed: 2)
    let optimizer = { try SGD(learningRate: 0.05) }
    let budget = try budgetForcing(
      k: 2, model: try ModelSpecification(parsing: Self.spec).build(seed: 3), optimizer: try optimizer(),
      loss: .crossEntropy, inputShape: [16], targetBatch: 64)
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("gradaccum-guard-\(UUID()).ckpt").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    func makeTrainer(scale: Double, budget: MemoryBudget) throws -> Trainer {
      var options = TrainerOptions()
      options.shuffle = false
      options.transientEstimateScale = scale
      options.checkpointPath = path
      return try Trainer(
        model: try ModelSpecification(parsing: Self.spec).build(seed: 3), optimizer: try optimizer(),
        loss: .crossEntropy, targetBatch: 64, memoryBudget: budget, options: options)
    }
    let wrong = try makeTrainer(scale: 0.25, budget: budget)
    let logPath = FileManager.default.temporaryDirectory.appendingPathComponent("gradaccum-guard-\(UUID()).jsonl").path
    defer { try? FileManager.default.removeItem(atPath: logPath) }
    wrong.log = try TrainingLog(path: logPath, budgetBytes: budget.bytes)
    var overshootPeak = 0
    do {
      try wrong.fit(dataset, epochs: 2)
      Issue.record("the first micro-step went over the budget with no measured size to fall back on, and training went on")
    } catch {
      guard case .budgetExceeded(let microBatch, let peak, let budgetBytes) = error else {
        Issue.record("\(error)")
        return
      }
      #expect(microBatch == wrong.plan.microBatch && peak > budgetBytes)
      overshootPeak = peak
    }
    let events = try String(contentsOfFile: logPath, encoding: .utf8).split(separator: "\n").filter {
      $0.contains("memory_guard")
    }
    #expect(events.count == 1)
    // The same budget: refused before any micro-step.
    let again = try makeTrainer(scale: 1, budget: budget)
    var microSteps = 0
    again.onEvent = { if case .microStep = $0 { microSteps += 1 } }
    #expect(throws: TrainingError.self) {
      try again.resume(from: path)
      try again.fit(dataset, epochs: 2)
    }
    #expect(microSteps == 0)
    // The budget the error names.
    let larger = MemoryBudget.bytes(overshootPeak + max(overshootPeak / 100, 64))
    let resumed = try makeTrainer(scale: 1, budget: larger)
    try resumed.resume(from: path)
    let report = try resumed.fit(dataset, epochs: 2)
    #expect(report.budgetViolations == 1)  // the one before the stop, carried by the checkpoint
    let correct = try makeTrainer(scale: 1, budget: budget)
    let correctReport = try correct.fit(dataset, epochs: 2)
    #expect(correctReport.budgetViolations == 0)
    expectSameParameters(
      resumed.model.parameters.map(\.values), correct.model.parameters.map(\.values), relative: 1e-5)
    #expect(report.steps == correctReport.steps)
  }

  @Test func afterAnOvershootWindowsAreMadeOfMeasuredSizes() {
    #expect(Trainer.compose(samples: 64, from: [16, 15]) == [16, 16, 16, 16])
    #expect(Trainer.compose(samples: 6, from: [5, 3]) == [3, 3])
    #expect(Trainer.compose(samples: 41, from: [11, 10]) == [11, 10, 10, 10])
    #expect(Trainer.compose(samples: 7, from: [5]) == nil)
    #expect(Trainer.compose(samples: 3, from: [5]) == nil)
    #expect(Trainer.compose(samples: 3, from: []) == nil)
  }

  @Test(arguments: [false, true])
  func resumeIsBitIdentical(midWindow: Bool) throws {
    let dataset = classificationData(count: 150, features: 16, classes: 5, seed: 4)
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("gradaccum-resume-\(UUID()).safetensors")
      .path
    defer { try? FileManager.default.removeItem(atPath: path) }
    func makeTrainer(checkpoint: String?) throws -> Trainer {
      let model = try ModelSpecification(parsing: "linear(16,48) relu dropout(0.3) linear(48,5)").build(seed: 8)
      var options = TrainerOptions()
      options.seed = 21
      options.checkpointPath = checkpoint
      options.learningRateSchedule = try CosineAnnealing(period: 20)
      let estimator = try MemoryEstimator(model: model, sampleShape: [16], loss: .crossEntropy, optimizer: try Adam())
      let budget = MemoryBudget.bytes(Int(Double(estimator.estimate(microBatch: 12).peakBytes + 64) / 0.99) + 1)
      return try Trainer(
        model: model, optimizer: try Adam(learningRate: 0.01), loss: .crossEntropy, targetBatch: 32,
        memoryBudget: budget, options: options)
    }
    let straight = try makeTrainer(checkpoint: nil)
    #expect(straight.plan.accumulationCount > 1)
    let full = try straight.fit(dataset, epochs: 3)
    let first = try makeTrainer(checkpoint: path)
    var microSteps = 0
    if midWindow {
      first.onEvent = { [unowned first] event in
        guard case .microStep = event else { return }
        microSteps += 1; if microSteps == 17 { first.requestStop() }
      }
    } else {
      first.onEvent = { [unowned first] in if case .step(let record) = $0, record.step == 7 { first.requestStop() } }
    }
    let partial = try first.fit(dataset, epochs: 3)
    #expect(partial.interrupted)
    let second = try makeTrainer(checkpoint: path)
    try second.resume(from: path)
    let resumed = try second.fit(dataset, epochs: 3)
    #expect(!resumed.interrupted)
    #expect(second.model.parameters.map(\.values) == straight.model.parameters.map(\.values))
    #expect(resumed.epochLosses == full.epochLosses)
    #expect(resumed.steps == full.steps)
  }

  @Test func batchDependentLayersWarnOnce() throws {
    final class FakeBatchNorm: Layer {
      func callAsFunction(_ input: Tensor) -> Tensor { input }
      func outputShape(forInput shape: [Int]) throws(ShapeError) -> [Int] { shape }
      var dependsOnBatch: Bool { true }
    }
    let model = Sequential {
      Linear(inputSize: 4, outputSize: 3, seed: 1); FakeBatchNorm()
    }
    let estimator = try MemoryEstimator(
      model: model, sampleShape: [4], loss: .crossEntropy, optimizer: try SGD(learningRate: 0.1))
    let budget = MemoryBudget.bytes(Int(Double(estimator.estimate(microBatch: 4).peakBytes + 64) / 0.99) + 1)
    let trainer = try Trainer(
      model: model, optimizer: try SGD(learningRate: 0.1), loss: .crossEntropy, targetBatch: 16, memoryBudget: budget)
    #expect(trainer.plan.accumulationCount > 1)
    #expect(trainer.warnings.filter { $0.contains("normalize over the batch") }.count == 1)
    // Made at initialization, delivered once a callback is set, and only once.
    var delivered: [String] = []
    trainer.onEvent = { if case .warning(let text) = $0 { delivered.append(text) } }
    trainer.onEvent = { if case .warning(let text) = $0 { delivered.append(text) } }
    #expect(delivered.count == 1 && delivered[0].contains("normalize over the batch"))
  }

  /// A label the model has no class for, or a bce target outside [0, 1], is an error of
  /// `fit` before the first step, not a trap inside it.
  @Test func badTargetsAreErrorsOfFit() throws {
    let model = try ModelSpecification(parsing: "linear(2,3)").build(seed: 0)
    let trainer = try Trainer(model: model, optimizer: try SGD(learningRate: 0.1), loss: .crossEntropy, microBatch: 2)
    let labels = TensorDataset(inputs: Tensor([1, 2, 3, 4, 5, 6], shape: [3, 2]), targets: Tensor([0, 1, 3], shape: [3]))
    #expect(throws: TrainingError.targets(.labelOutOfRange(sample: 2, label: 3, classes: 3))) {
      try trainer.fit(labels, epochs: 1)
    }
    let fractional = TensorDataset(inputs: Tensor([1, 2], shape: [1, 2]), targets: Tensor([0.5], shape: [1]))
    #expect(throws: TrainingError.targets(.labelOutOfRange(sample: 0, label: 0.5, classes: 3))) {
      try trainer.fit(fractional, epochs: 1)
    }
    let binary = try Trainer(
      model: try ModelSpecification(parsing: "linear(2,1) sigmoid").build(seed: 0), optimizer: try SGD(learningRate: 0.1),
      loss: .binaryCrossEntropy, microBatch: 2)
    let probabilities = TensorDataset(inputs: Tensor([1, 2, 3, 4], shape: [2, 2]), targets: Tensor([1, 2], shape: [2]))
    #expect(throws: TrainingError.targets(.probabilityOutOfRange(sample: 1, value: 2))) {
      try binary.fit(probabilities, epochs: 1)
    }
  }

  /// The library speaks of its API, not of command-line flags; the command line gives the
  /// advice in flags (`give at least --budget N`).
  @Test func libraryMessagesNameNoFlags() {
    let messages: [String] = [
      PlanningError.budgetTooSmall(budgetBytes: 1, minimumBytes: 100, breakdown: "b", marginBytes: 2).description,
      PlanningError.unknownInputShape.description,
      PlanningError.timedWindowTooLong(targetBatch: 10, microBatch: 1).description,
      TrainingError.budgetExceeded(microBatch: 2, peakBytes: 100, budgetBytes: 50).description,
      TrainingError.notACheckpoint(path: "w.safetensors").description,
      TrainingError.targets(.labelOutOfRange(sample: 0, label: 3, classes: 2)).description,
    ]
    for message in messages { #expect(!message.contains("--"), "\(message)") }
    #expect(
      PlanningError.budgetTooSmall(budgetBytes: 1, minimumBytes: 100, breakdown: "b", marginBytes: 2)
        .smallestBudgetBytes == 102)
  }

  @Test func invalidSettingsAreRejected() throws {
    let model = try ModelSpecification(parsing: "linear(4,2)").build(seed: 0)
    #expect(throws: PlanningError.invalidMicroBatch(0)) {
      try Trainer(model: model, optimizer: try SGD(learningRate: 0.1), loss: .crossEntropy, microBatch: 0)
    }
    #expect(throws: PlanningError.invalidAccumulationCount(-1)) {
      try Trainer(
        model: model, optimizer: try SGD(learningRate: 0.1), loss: .crossEntropy, microBatch: 4, accumulationCount: -1)
    }
    #expect(throws: PlanningError.invalidAccumulationCount(Int.max)) {
      try Trainer(
        model: model, optimizer: try SGD(learningRate: 0.1), loss: .crossEntropy, microBatch: 4,
        accumulationCount: Int.max)
    }
    #expect(throws: PlanningError.invalidTargetBatch(0)) {
      try Trainer(
        model: model, optimizer: try SGD(learningRate: 0.1), loss: .crossEntropy, targetBatch: 0, memoryBudget: .mb(1))
    }
    #expect(throws: PlanningError.self) {
      try Trainer(
        model: model, optimizer: try SGD(learningRate: 0.1), loss: .crossEntropy, targetBatch: 8,
        memoryBudget: .bytes(100))
    }
    let trainer = try Trainer(
      model: model, optimizer: try SGD(learningRate: 0.1), loss: .crossEntropy, targetBatch: 8, memoryBudget: .mb(1))
    let wrongShape = TensorDataset(inputs: Tensor(zeros: [5, 3]), targets: Tensor(zeros: [5]))
    #expect(throws: TrainingError.self) { try trainer.fit(wrongShape, epochs: 1) }
    #expect(throws: TrainingError.self) {
      try trainer.fit(TensorDataset(inputs: Tensor(zeros: [5, 4]), targets: Tensor(zeros: [5])), epochs: 0)
    }
  }

  @Test func clippingSeesTheAccumulatedGradient() throws {
    let a = Tensor([3, 4], shape: [2], requiresGradient: true)
    a.gradient = Tensor([3, 4], shape: [2])
    let norm = WindowStepper.clipGradients([a], maximumNorm: 1)
    #expect(norm == 5)
    expectClose(a.gradient!.values, [0.6, 0.8], relative: 1e-5)
  }
}

@Suite("Non-finite values")
struct NonFiniteTests {
  /// A regression whose learning rate makes it overflow within a few steps.
  func divergingTrainer(_ policy: NonFinitePolicy, checkpoint: String? = nil) throws -> (Trainer, TensorDataset) {
    let dataset = regressionData(count: 64, features: 3, seed: 1)
    let model = try ModelSpecification(parsing: "linear(3,8) relu linear(8,1)").build(seed: 2)
    var options = TrainerOptions()
    options.shuffle = false
    options.onNonFinite = policy
    options.checkpointPath = checkpoint
    let trainer = try Trainer(
      model: model, optimizer: try SGD(learningRate: 1e6), loss: .meanSquaredError, targetBatch: 16,
      memoryBudget: .mb(4),
      options: options)
    return (trainer, dataset)
  }

  @Test func stopReportsTheStepAndLeavesParametersAsTheyWere() throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("gradaccum-nan-\(UUID()).ckpt").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    let (trainer, dataset) = try divergingTrainer(.stop, checkpoint: path)
    var lastGood: [[Float]] = trainer.model.parameters.map(\.values)
    trainer.onEvent = { [unowned trainer] in
      if case .step = $0 { lastGood = trainer.model.parameters.map(\.values) }
    }
    do {
      try trainer.fit(dataset, epochs: 50)
      Issue.record("training with learning rate 1e6 did not diverge")
    } catch {
      guard case .nonFinite(let value) = error else { Issue.record("\(error)"); return }
      #expect(value.step >= 2)
      #expect(["loss", "0.weight", "0.bias", "2.weight", "2.bias"].contains(value.location))
      #expect(error.description.contains("step \(value.step)"))
      #expect(trainer.model.parameters.map(\.values) == lastGood)
      #expect(FileManager.default.fileExists(atPath: path))
    }
  }

  @Test func skipGoesOnWithoutChangingParametersOnBadWindows() throws {
    let (trainer, dataset) = try divergingTrainer(.skip)
    var warnings: [String] = []
    trainer.onEvent = { if case .warning(let text) = $0 { warnings.append(text) } }
    let report = try trainer.fit(dataset, epochs: 5)
    #expect(report.skippedSteps > 0)
    #expect(report.steps + report.skippedSteps == 5 * 4)
    #expect(warnings.contains { $0.hasPrefix("skipped step") })
  }
}

@Suite("Leaks")
struct LeakTests {
  @Test(.measuresMemory) func releasingATrainerReturnsItsMemory() throws {
    let dataset = classificationData(count: 300, features: 16, classes: 5, seed: 1)
    func run() throws {
      let model = try ModelSpecification(parsing: "linear(16,256) relu linear(256,256) relu linear(256,5)").build(
        seed: 1)
      let trainer = try Trainer(
        model: model, optimizer: try Adam(), loss: .crossEntropy, targetBatch: 64, memoryBudget: .mb(8))
      try trainer.fit(dataset, epochs: 2)
      _ = trainer.evaluate(dataset)
    }
    try run()  // one-time allocations (type metadata, caches) happen here
    let counters = try MemoryStatistics.threadCounters()
    let before = counters.netBytes
    var during = 0
    do {
      let model = try ModelSpecification(parsing: "linear(16,256) relu linear(256,256) relu linear(256,5)").build(
        seed: 1)
      let trainer = try Trainer(
        model: model, optimizer: try Adam(), loss: .crossEntropy, targetBatch: 64, memoryBudget: .mb(8))
      try trainer.fit(dataset, epochs: 2)
      during = counters.netBytes - before
    }
    try run()
    let after = counters.netBytes - before
    // The trainer held over 1 MiB (parameters, gradients, Adam's moments); all of it is back.
    #expect(during > 1 << 20)
    #expect(abs(after) <= during / 100, "after \(after) bytes, during \(during) bytes")
  }
}

@Suite("Evaluation")
struct EvaluationTests {
  @Test func evaluatesInEvaluationModeWithoutTouchingTheModel() throws {
    let model = try ModelSpecification(parsing: "linear(3,4) batchnorm1d(4) relu dropout(0.5) linear(4,3)").build(
      seed: 1)
    let inputs = randomTensor([10, 3], seed: 2)
    let labels = Tensor((0..<10).map { Float($0 % 3) }, shape: [10])
    let dataset = TensorDataset(inputs: inputs, targets: labels)
    // Give the running statistics values of their own.
    for _ in 0..<4 { _ = model(randomTensor([6, 3], seed: 3)) }
    let state = model.namedState.map(\.tensor.values)
    let counters = model.namedCounters.map(\.counter.value)
    let evaluation = model.evaluate(dataset, loss: .crossEntropy, batchSize: 4)
    #expect(model.namedState.map(\.tensor.values) == state)
    #expect(model.namedCounters.map(\.counter.value) == counters)
    #expect(evaluation.sampleCount == 10)
    // The same numbers by hand: evaluation mode, one batch, mean cross-entropy.
    model.setTraining(false)
    let output = model(inputs)
    model.setTraining(true)
    let expectedLoss = Loss.crossEntropy(output, labels).scalarValue
    expectClose([evaluation.loss], [expectedLoss], relative: 1e-5)
    var correct = 0
    for row in 0..<10 {
      let scores = Array(output.values[(row * 3)..<(row * 3 + 3)])
      if scores.firstIndex(of: scores.max()!) == row % 3 { correct += 1 }
    }
    #expect(evaluation.accuracy == Float(correct) / 10)
    // Back in training mode: dropout draws again, batch statistics move the running ones.
    _ = model(inputs)
    #expect(model.namedCounters.map(\.counter.value) == counters.map { $0 + 1 })
  }
}
