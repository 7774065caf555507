import GradAccum
import Testing
import _TestSupport

/// A classification dataset: `count` samples of `features` uniform values, labels from a
/// fixed rule so that there is something to learn.
func classificationData(count: Int, features: Int, classes: Int, seed: UInt64) -> TensorDataset {
  var generator = RandomGenerator(seed: seed)
  let inputs = Tensor(uniformShape: [count, features], low: -1, high: 1, generator: &generator)
  let x = inputs.buffer
  let labels = (0..<count).map { i -> Float in
    let score = (0..<features).reduce(Float(0)) { $0 + x[i * features + $1] * Float($1 % 3 - 1) }
    return Float(min(classes - 1, max(0, Int((score + 1.5) / 3 * Float(classes)))))
  }
  return TensorDataset(inputs: inputs, targets: Tensor(labels, shape: [count]))
}

func regressionData(count: Int, features: Int, seed: UInt64) -> TensorDataset {
  var generator = RandomGenerator(seed: seed)
  let inputs = Tensor(uniformShape: [count, features], low: -1, high: 1, generator: &generator)
  let x = inputs.buffer
  let targets = (0..<count).map { i in
    (0..<features).reduce(Float(0.5)) { $0 + x[i * features + $1] * Float($1 + 1) * 0.3 }
  }
  return TensorDataset(inputs: inputs, targets: Tensor(targets, shape: [count]))
}

/// A trainer of `model` with a fixed schedule, in file order (options as given otherwise).
func fixedTrainer(
  _ model: any Layer, optimizer: Optimizer, loss: Loss, microBatch: Int, accumulationCount: Int,
  options: TrainerOptions = TrainerOptions(), shuffle: Bool = false
) throws -> Trainer {
  var options = options
  options.shuffle = shuffle
  return try Trainer(
    model: model, optimizer: optimizer, loss: loss, microBatch: microBatch, accumulationCount: accumulationCount,
    options: options)
}

/// Trains a fresh model from `specification` (seed 3) with micro-batches of `microBatch`,
/// `accumulationCount` per step; returns the final parameter values and the report.
func train(
  _ specification: String, dataset: TensorDataset, loss: Loss, optimizer: () throws -> Optimizer,
  microBatch: Int, accumulationCount: Int, epochs: Int
) throws -> (parameters: [[Float]], report: TrainingReport) {
  let model = try ModelSpecification(parsing: specification).build(seed: 3)
  let trainer = try fixedTrainer(
    model, optimizer: try optimizer(), loss: loss, microBatch: microBatch, accumulationCount: accumulationCount)
  let report = try trainer.fit(dataset, epochs: epochs)
  return (model.parameters.map(\.values), report)
}

func expectSameParameters(
  _ a: [[Float]], _ b: [[Float]], relative: Float, sourceLocation: SourceLocation = #_sourceLocation
) {
  let difference = maximumRelativeDifference(a.flatMap { $0 }, b.flatMap { $0 }, floor: 1e-3)
  #expect(difference <= relative, "largest relative difference \(difference)", sourceLocation: sourceLocation)
}

@Suite("Accumulation equals one big batch")
struct AccumulationTests {
  /// A fixed schedule cuts micro-batches of its size (the last smaller); `dropLast` drops
  /// the epoch's last partial window, as in the planned schedule.
  @Test(arguments: [false, true])
  func fixedScheduleCutsPartialWindows(dropLast: Bool) throws {
    let dataset = regressionData(count: 95, features: 2, seed: 1)
    let options = TrainerOptions(dropLast: dropLast)
    let trainer = try fixedTrainer(
      try ModelSpecification(parsing: "linear(2,1)").build(seed: 1), optimizer: try SGD(learningRate: 0.01),
      loss: .meanSquaredError, microBatch: 10, accumulationCount: 4, options: options)
    var windows: [[Int]] = []
    trainer.onEvent = { if case .step(let record) = $0 { windows.append(record.microBatches) } }
    try trainer.fit(dataset, epochs: 1)
    #expect(windows == [[10, 10, 10, 10], [10, 10, 10, 10]] + (dropLast ? [] : [[10, 5]]))
  }

  @Test(arguments: [(10, 4), (8, 5), (20, 2), (4, 10)])
  func adamCrossEntropyMatchesTheBigBatch(microBatch: Int, accumulation: Int) throws {
    // 93 samples: windows of 40 and a partial last window of 13.
    let dataset = classificationData(count: 93, features: 6, classes: 4, seed: 1)
    let spec = "linear(6,16) relu linear(16,4)"
    let big = try train(
      spec, dataset: dataset, loss: .crossEntropy, optimizer: { try Adam(learningRate: 0.01) },
      microBatch: 40, accumulationCount: 1, epochs: 3)
    let small = try train(
      spec, dataset: dataset, loss: .crossEntropy, optimizer: { try Adam(learningRate: 0.01) },
      microBatch: microBatch, accumulationCount: accumulation, epochs: 3)
    expectSameParameters(small.parameters, big.parameters, relative: 1e-5)
    expectClose(small.report.epochLosses, big.report.epochLosses, relative: 1e-5)
    #expect(small.report.steps == big.report.steps)
  }

  @Test func sgdMomentumMeanSquaredErrorWithAnUnevenLastWindow() throws {
    let dataset = regressionData(count: 107, features: 3, seed: 2)
    let spec = "linear(3,8) tanh linear(8,1)"
    let optimizer = { try SGD(learningRate: 0.05, momentum: 0.9, weightDecay: 0.01) as Optimizer }
    let big = try train(
      spec, dataset: dataset, loss: .meanSquaredError, optimizer: optimizer,
      microBatch: 30, accumulationCount: 1, epochs: 3)
    // 30 = 7 + 7 + 7 + 7 + 2 would not line up; 3 × 10 does, and the last window is 17 = 10 + 7.
    let small = try train(
      spec, dataset: dataset, loss: .meanSquaredError, optimizer: optimizer,
      microBatch: 10, accumulationCount: 3, epochs: 3)
    expectSameParameters(small.parameters, big.parameters, relative: 1e-5)
  }

  @Test func dividingByTheAccumulationCountWouldBeWrong() throws {
    // The counterfactual: scaling every micro-batch by 1/k differs from the big batch when
    // the last window is partial, which is why the library scales by mᵢ/W.
    let dataset = regressionData(count: 25, features: 2, seed: 4)
    let model = try ModelSpecification(parsing: "linear(2,1)").build(seed: 1)
    let x = dataset.inputs, y = dataset.targets
    // Last window: samples 20..<25, micro-batches of 4 and 1, k = 2.
    let a = dataset.batch(at: [20, 21, 22, 23]), b = dataset.batch(at: [24])
    (meanSquaredError(predicted: model(a.inputs), expected: a.targets) / 2).backward()
    (meanSquaredError(predicted: model(b.inputs), expected: b.targets) / 2).backward()
    let naive = model.parameters.map { $0.gradient!.values }
    model.zeroGradients()
    let window = dataset.batch(at: Array(20..<25))
    meanSquaredError(predicted: model(window.inputs), expected: window.targets).backward()
    let exact = model.parameters.map { $0.gradient!.values }
    #expect(maximumRelativeDifference(naive.flatMap { $0 }, exact.flatMap { $0 }) > 0.01)
    _ = (x, y)
  }

  @Test func unevenlyIgnoredLabelsGiveTheFullWindowGradient() throws {
    let dataset = classificationData(count: 12, features: 4, classes: 3, seed: 5)
    var labels = dataset.targets.values
    // Micro-batch 1 (samples 0..<4): three labels ignored; micro-batch 2: none; micro-batch 3: one.
    for i in [0, 1, 3, 9] { labels[i] = -100 }
    let padded = TensorDataset(inputs: dataset.inputs, targets: Tensor(labels, shape: [12]))
    let spec = try ModelSpecification(parsing: "linear(4,5) relu linear(5,3)")
    let full = spec.build(seed: 2), accumulated = spec.build(seed: 2)
    let window = padded.batch(at: Array(0..<12))
    crossEntropy(logits: full(window.inputs), labels: labels.map { Int($0) }).backward()
    let stepper = WindowStepper(model: accumulated, optimizer: try SGD(learningRate: 1), loss: .crossEntropy)
    let before = accumulated.parameters.map(\.values)
    let record = stepper.step(window: [
      padded.batch(at: [0, 1, 2, 3]), padded.batch(at: [4, 5, 6, 7]), padded.batch(at: [8, 9, 10, 11]),
    ])
    // With lr = 1, the update is the accumulated gradient.
    let applied = zip(before, accumulated.parameters.map(\.values)).map { zip($0, $1).map { $0 - $1 } }
    expectSameParameters(applied, full.parameters.map { $0.gradient!.values }, relative: 1e-5)
    let fullLoss = crossEntropy(logits: spec.build(seed: 2)(window.inputs), labels: labels.map { Int($0) }).scalarValue
    expectClose([record.loss], [fullLoss], relative: 1e-6)
    #expect(record.microBatches == [4, 4, 4] && record.samples == 12)
  }
}

@Suite("Training against an independent reference")
struct ReferenceTrainingTests {
  func datasetRows(_ dataset: TensorDataset) -> [[Double]] {
    let width = dataset.sampleShape[0]
    return (0..<dataset.count).map { i in (0..<width).map { Double(dataset.inputs.buffer[i * width + $0]) } }
  }

  @Test(arguments: [
    ("adam", 10, 4), ("adamw", 10, 2), ("adam-amsgrad", 7, 3), ("sgd-nesterov", 8, 2),
  ])
  func crossEntropyTrainingMatchesTheReference(optimizerName: String, microBatch: Int, accumulation: Int) throws {
    // 73 samples: every case ends with a window of unequal micro-batches.
    let dataset = classificationData(count: 73, features: 5, classes: 3, seed: 6)
    let model = try ModelSpecification(parsing: "linear(5,7) relu linear(7,3)").build(seed: 9)
    var reference = ReferenceMLP(
      sizes: [5, 7, 3], activations: [.relu, .none], parameters: model.parameters.map(\.values))
    let optimizer: Optimizer
    let referenceOptimizer: ReferenceMLP.OptimizerKind
    switch optimizerName {
    case "adam":
      optimizer = try Adam(learningRate: 0.02, weightDecay: 0.001)
      referenceOptimizer = .adam(lr: 0.02, weightDecay: 0.001, decoupled: false, amsgrad: false)
    case "adamw":
      optimizer = try AdamW(learningRate: 0.02)
      referenceOptimizer = .adam(lr: 0.02, weightDecay: 0.01, decoupled: true, amsgrad: false)
    case "adam-amsgrad":
      optimizer = try Adam(learningRate: 0.02, amsgrad: true)
      referenceOptimizer = .adam(lr: 0.02, weightDecay: 0, decoupled: false, amsgrad: true)
    default:
      optimizer = try SGD(learningRate: 0.1, momentum: 0.8, weightDecay: 0.01, nesterov: true)
      referenceOptimizer = .sgd(lr: 0.1, momentum: 0.8, dampening: 0, weightDecay: 0.01, nesterov: true)
    }
    let report = try fixedTrainer(
      model, optimizer: optimizer, loss: .crossEntropy, microBatch: microBatch, accumulationCount: accumulation
    ).fit(dataset, epochs: 3)
    let losses = reference.train(
      inputs: datasetRows(dataset), targets: dataset.targets.values.map(Double.init),
      loss: .crossEntropy(ignoreIndex: -100),
      optimizer: referenceOptimizer, epochs: 3, microBatch: microBatch, accumulation: accumulation)
    expectSameParameters(model.parameters.map(\.values), reference.parameters, relative: 1e-4)
    expectClose(report.epochLosses, losses.map(Float.init), relative: 1e-4)
  }

  @Test func sgdMomentumMeanSquaredErrorMatchesTheReference() throws {
    let dataset = regressionData(count: 55, features: 4, seed: 8)
    let model = try ModelSpecification(parsing: "linear(4,6) tanh linear(6,1)").build(seed: 10)
    var reference = ReferenceMLP(
      sizes: [4, 6, 1], activations: [.tanh, .none], parameters: model.parameters.map(\.values))
    _ = try fixedTrainer(
      model, optimizer: try SGD(learningRate: 0.05, momentum: 0.9, dampening: 0.1, weightDecay: 0.01),
      loss: .meanSquaredError, microBatch: 6, accumulationCount: 3
    ).fit(dataset, epochs: 3)
    _ = reference.train(
      inputs: datasetRows(dataset), targets: dataset.targets.values.map(Double.init), loss: .mse,
      optimizer: .sgd(lr: 0.05, momentum: 0.9, dampening: 0.1, weightDecay: 0.01, nesterov: false),
      epochs: 3, microBatch: 6, accumulation: 3)
    expectSameParameters(model.parameters.map(\.values), reference.parameters, relative: 1e-4)
  }

  @Test func shuffledTrainingIsReproducibleFromTheSeed() throws {
    let dataset = classificationData(count: 50, features: 4, classes: 2, seed: 3)
    func run(seed: UInt64) throws -> [[Float]] {
      let model = try ModelSpecification(parsing: "linear(4,4) relu dropout(0.2) linear(4,2)").build(seed: 1)
      var options = TrainerOptions()
      options.seed = seed
      _ = try fixedTrainer(
        model, optimizer: try Adam(), loss: .crossEntropy, microBatch: 8, accumulationCount: 2, options: options,
        shuffle: true
      ).fit(dataset, epochs: 2)
      return model.parameters.map(\.values)
    }
    #expect(try run(seed: 5) == run(seed: 5))
    #expect(try run(seed: 5) != run(seed: 6))
  }

  @Test func learningRateScheduleStepsPerOptimizerStep() throws {
    let dataset = regressionData(count: 40, features: 2, seed: 1)
    let model = try ModelSpecification(parsing: "linear(2,1)").build(seed: 1)
    var options = TrainerOptions()
    options.learningRateSchedule = try StepDecay(stepSize: 2, gamma: 0.5)
    let trainer = try fixedTrainer(
      model, optimizer: try SGD(learningRate: 0.1), loss: .meanSquaredError, microBatch: 5, accumulationCount: 2,
      options: options)
    var rates: [Float] = []
    trainer.onEvent = { if case .step(let record) = $0 { rates.append(record.learningRate) } }
    _ = try trainer.fit(dataset, epochs: 1)
    // 4 windows of 2 micro-batches: the schedule sees 4 steps, not 8.
    #expect(rates == [0.1, 0.1, 0.05, 0.05])
  }
}
