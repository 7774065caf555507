import GradAccum
import Testing
import _TestSupport

@Suite("Memory budgets")
struct MemoryBudgetTests {
  @Test(arguments: [
    ("64MB", 64 << 20), ("64MiB", 64 << 20), ("64M", 64 << 20), ("64mb", 64 << 20), ("1.5GB", 3 << 29),
    ("512KB", 512 << 10), ("512k", 512 << 10), ("65536", 65536), ("65536B", 65536), (" 2 GiB ", 2 << 30),
  ])
  func parsesSizes(text: String, bytes: Int) throws {
    #expect(try MemoryBudget(parsing: text).bytes == bytes)
  }

  @Test(arguments: [
    ("", BudgetError.empty), ("  ", BudgetError.empty), ("abc", .notASize(text: "abc")), ("MB", .notASize(text: "MB")),
    ("0", .notPositive(text: "0")), ("-5MB", .notPositive(text: "-5MB")), ("0.1", .notPositive(text: "0.1")),
    ("12XB", .unknownUnit(text: "12XB", unit: "xb")), ("99999999999TB", .tooLarge(text: "99999999999TB")),
    ("1..5MB", .notASize(text: "1..5MB")),
  ])
  func rejectsBadSizes(text: String, error: BudgetError) {
    #expect(throws: error) { try MemoryBudget(parsing: text) }
  }

  @Test func binaryUnitsInCode() {
    #expect(MemoryBudget.mb(64).bytes == 64 * 1_048_576)
    #expect(MemoryBudget.kb(1.5).bytes == 1536)
    #expect(MemoryBudget.gb(1).bytes == 1 << 30)
    #expect(MemoryBudget.mb(64).description == "64.00 MiB")
    // The unit follows the size, so small budgets print apart.
    #expect(MemoryBudget.format(bytes: 120 * 1024) == "120.00 KiB")
    #expect(MemoryBudget.format(bytes: 118_552) == "115.77 KiB")
    #expect(MemoryBudget.format(bytes: 512) == "512 bytes")
    #expect(MemoryBudget.format(bytes: 3 << 29) == "1.50 GiB")
  }
}

@Suite("Size classes")
struct SizeClassTests {
  @Test func tableFromMallctlRoundsAsJemallocDoes() throws {
    let classes = try SizeClasses()
    #expect(classes.classBytes.count > 100)
    #expect(classes.classBytes == classes.classBytes.sorted())
    var generator = RandomGenerator(seed: 4)
    let requests =
      [1, 8, 9, 16, 17, 4096, 4097, 14337, 1 << 20, (1 << 20) + 1]
      + (0..<300).map { _ in Int(generator.next() % (64 << 20)) + 1 }
    for request in requests {
      #expect(
        classes.roundedBytes(forRequest: request) == MemoryStatistics.sizeClassBytes(forRequest: request),
        "request \(request)")
    }
  }
}

@Suite("Windows")
struct WindowTests {
  @Test func balancedSizesDifferByAtMostOne() {
    #expect(Array(Plan.balancedSizes(samples: 40, microBatch: 12)) == [10, 10, 10, 10])
    #expect(Array(Plan.balancedSizes(samples: 41, microBatch: 12)) == [11, 10, 10, 10])
    #expect(Array(Plan.balancedSizes(samples: 40, microBatch: 40)) == [40])
    #expect(Array(Plan.balancedSizes(samples: 7, microBatch: 100)) == [7])
    for samples in 1...60 {
      for microBatch in 1...20 {
        let sizes = Plan.balancedSizes(samples: samples, microBatch: microBatch)
        #expect(sizes.reduce(0, +) == samples)
        #expect(sizes.count == (samples + microBatch - 1) / microBatch)
        #expect(sizes.max()! - sizes.min()! <= 1 && sizes.max()! <= microBatch)
      }
    }
  }

  /// A window of 10^12 samples is three integers, and summarised by counts.
  @Test func hugeWindowsAreComputedNotStored() {
    let sizes = Plan.balancedSizes(samples: 1_000_000_000_000, microBatch: 3413)
    #expect(sizes.count == 292_997_364)
    #expect(sizes.sizeCounts.map(\.size) == [3413, 3412])
    #expect(sizes.sizeCounts.map { $0.size * $0.count }.reduce(0, +) == 1_000_000_000_000)
    #expect(sizes.summary == "3413 × 292994032, 3412 × 3332")
    #expect(Plan.balancedSizes(samples: 41, microBatch: 12).summary == "11, 10, 10, 10")
  }
}

/// A shape-only model from a specification (no parameter storage).
func shapeOnlyModel(_ text: String) throws -> Sequential {
  let specification = try ModelSpecification(parsing: text)
  return ShapeTracing.run(AllocationTrace()) { specification.build(seed: 0) }
}

func makeOptimizer(_ name: String) throws -> Optimizer {
  switch name {
  case "sgd": try SGD(learningRate: 0.01)
  case "sgd-momentum": try SGD(learningRate: 0.01, momentum: 0.9)
  case "adam": try Adam()
  default: try AdamW()
  }
}

@Suite("Prediction against jemalloc measurement")
struct PredictionTests {
  static let cases: [(String, Int, String, String)] = [
    ("linear(784,512) relu linear(512,512) relu linear(512,10)", 784, "sgd", "cross-entropy"),
    ("linear(64,128) tanh linear(128,10)", 64, "adam", "cross-entropy"),
    ("linear(32,96) gelu linear(96,96) sigmoid linear(96,1)", 32, "adamw", "mse"),
    ("linear(20,64) relu dropout(0.2) linear(64,3)", 20, "sgd-momentum", "cross-entropy"),
    ("linear(10,300) relu linear(300,4)", 10, "adam", "mse"),
    ("linear(3,8) tanh linear(8,1)", 3, "sgd", "mse"),
  ]

  @Test(.measuresMemory, arguments: cases)
  func predictionIsWithinTwoPercent(model text: String, width: Int, optimizer: String, lossName: String) throws {
    let loss: Loss = lossName == "mse" ? .meanSquaredError : .crossEntropy
    let shapeModel = try shapeOnlyModel(text)
    let outputShape = try shapeModel.outputShape(forInput: [width])
    let estimator = try MemoryEstimator(
      model: shapeModel, sampleShape: [width], targetShape: loss.targetShape(outputShape: outputShape), loss: loss,
      optimizer: makeOptimizer(optimizer))
    let real = try ModelSpecification(parsing: text).build(seed: 0)
    let measurement = try MemoryMeasurement(
      model: real, optimizer: makeOptimizer(optimizer), loss: loss, sampleShape: [width])
    for m in [1, 3, 17, 64, 256, 1024] {
      let predicted = estimator.estimate(microBatch: m).peakBytes
      let measured = measurement.peakBytes(microBatch: m)
      let error = abs(Double(predicted - measured)) / Double(measured)
      #expect(error <= 0.02, "\(text) \(optimizer) \(lossName) m=\(m): predicted \(predicted), measured \(measured)")
    }
  }

  @Test func tracingTouchesNeitherTheModelNorItsGradients() throws {
    let model = try ModelSpecification(parsing: "linear(6,5) relu linear(5,2)").build(seed: 3)
    let stepper = WindowStepper(model: model, optimizer: try Adam(), loss: .crossEntropy)
    let before = model.parameters.map(\.values)
    let gradients = model.parameters.map { $0.gradient! }
    let estimator = try MemoryEstimator(
      model: model, sampleShape: [6], loss: .crossEntropy, optimizer: stepper.optimizer)
    _ = estimator.estimate(microBatch: 50)
    #expect(model.parameters.map(\.values) == before)
    #expect(zip(model.parameters, gradients).allSatisfy { $0.gradient === $1 && $1.values.allSatisfy { $0 == 0 } })
    #expect(stepper.optimizer.parameterStates.allSatisfy { $0?.step == 0 })
  }

  @Test func hugeMicroBatchesArePredictedWithoutAllocatingThem() throws {
    let estimator = try MemoryEstimator(
      model: try shapeOnlyModel("linear(784,512) relu linear(512,10)"), sampleShape: [784], loss: .crossEntropy,
      optimizer: try SGD(learningRate: 0.1))
    let counters = try MemoryStatistics.threadCounters()
    let before = counters.netBytes
    let (_, peak) = TransientPeak.measure { estimator.estimate(microBatch: 100_000) }
    #expect(peak < 1 << 20)
    #expect(counters.netBytes - before < 1 << 20)
    // 100 000 × 784 inputs alone are 313 600 000 bytes.
    #expect(estimator.transientBytes(microBatch: 100_000) > 313_600_000)
  }

  @Test func shapeErrorsAreReported() throws {
    #expect(throws: PlanningError.shape(.featureMismatch(layer: "linear(4,2)", expected: 4, actual: [5]))) {
      try MemoryEstimator(
        model: try shapeOnlyModel("linear(4,2)"), sampleShape: [5], loss: .crossEntropy,
        optimizer: try SGD(learningRate: 1))
    }
  }
}

@Suite("Planner")
struct PlannerTests {
  func estimator(_ text: String, width: Int, optimizer: String = "adam") throws -> MemoryEstimator {
    try MemoryEstimator(
      model: try shapeOnlyModel(text), sampleShape: [width], loss: .crossEntropy, optimizer: makeOptimizer(optimizer))
  }

  @Test(.measuresMemory, arguments: [(256, 16.0), (100, 13.5), (1000, 20.0)])
  func choosesTheLargestFeasibleMicroBatch(targetBatch: Int, budgetMiB: Double) throws {
    let text = "linear(784,512) relu linear(512,512) relu linear(512,10)"
    let estimator = try estimator(text, width: 784)
    let plan = try Planner.plan(
      estimator: estimator, targetBatch: targetBatch, budget: .mb(budgetMiB), datasetSize: 1000, marginBytes: 0)
    #expect(plan.microBatch <= targetBatch)
    #expect(plan.predictedPeakBytes <= plan.budgetBytes)
    #expect(plan.windowSizes == Plan.balancedSizes(samples: targetBatch, microBatch: plan.microBatch))
    let measurement = try MemoryMeasurement(
      model: try ModelSpecification(parsing: text).build(seed: 0), optimizer: try Adam(), loss: .crossEntropy,
      sampleShape: [784])
    #expect(measurement.peakBytes(microBatch: plan.microBatch) <= plan.budgetBytes)
    if plan.microBatch < targetBatch {
      #expect(measurement.peakBytes(microBatch: plan.microBatch + 1) > plan.budgetBytes)
      #expect(estimator.estimate(microBatch: plan.microBatch + 1).peakBytes > plan.budgetBytes)
    }
  }

  @Test func budgetTooSmallStatesTheMinimum() throws {
    let estimator = try estimator("linear(784,512) relu linear(512,10)", width: 784)
    do {
      _ = try Planner.plan(estimator: estimator, targetBatch: 32, budget: .mb(1), marginBytes: 0)
      Issue.record("planned under 1 MiB")
    } catch let error {
      guard case .budgetTooSmall(_, let minimum, let breakdown, _) = error else { Issue.record("\(error)"); return }
      #expect(minimum == estimator.estimate(microBatch: 1).peakBytes)
      #expect(breakdown.contains("parameters 1857584"))
      #expect(error.description.contains("the smallest budget that trains is \(minimum) bytes"))
      let plan = try Planner.plan(estimator: estimator, targetBatch: 32, budget: .bytes(minimum), marginBytes: 0)
      #expect(plan.microBatch == 1 && plan.accumulationCount == 32)
    }
  }

  /// The default keeps 1% of the budget free, as the trainer does, and the stated minimum
  /// includes it.
  @Test func theDefaultMarginIsTheTrainers() throws {
    let estimator = try estimator("linear(784,512) relu linear(512,10)", width: 784)
    let plan = try Planner.plan(estimator: estimator, targetBatch: 256, budget: .mb(8))
    #expect(plan.marginBytes == (8 << 20) / 100)
    #expect(plan.predictedPeakBytes <= plan.budgetBytes - plan.marginBytes)
    #expect(estimator.estimate(microBatch: plan.microBatch + 1).peakBytes > plan.budgetBytes - plan.marginBytes)
    #expect(plan.description.contains("safety margin"))
    do {
      _ = try Planner.plan(estimator: estimator, targetBatch: 32, budget: .mb(1))
      Issue.record("planned under 1 MiB")
    } catch {
      guard case .budgetTooSmall(_, let minimum, _, let margin) = error else { Issue.record("\(error)"); return }
      let stated = minimum + margin
      #expect(margin > 0)
      #expect(try Planner.plan(estimator: estimator, targetBatch: 32, budget: .bytes(stated)).microBatch == 1)
      #expect(throws: PlanningError.self) { try Planner.plan(estimator: estimator, targetBatch: 32, budget: .bytes(stated - 1)) }
    }
  }

  @Test func invalidTargetsAreRejected() throws {
    let estimator = try estimator("linear(4,2)", width: 4)
    #expect(throws: PlanningError.invalidTargetBatch(0)) {
      try Planner.plan(estimator: estimator, targetBatch: 0, budget: .mb(1))
    }
    #expect(throws: PlanningError.invalidTargetBatch(-3)) {
      try Planner.plan(estimator: estimator, targetBatch: -3, budget: .mb(1))
    }
    #expect(throws: PlanningError.invalidDatasetSize(0)) {
      try Planner.plan(estimator: estimator, targetBatch: 4, budget: .mb(1), datasetSize: 0)
    }
  }

  @Test func lastWindowAndEpochWindows() throws {
    let estimator = try estimator("linear(784,512) relu linear(512,512) relu linear(512,10)", width: 784)
    let plan = try Planner.plan(estimator: estimator, targetBatch: 256, budget: .mb(16), datasetSize: 1000)
    #expect(plan.lastWindowSizes == Plan.balancedSizes(samples: 1000 % 256, microBatch: plan.microBatch))
    let windows = plan.windows(sampleCount: 1000)
    #expect(windows.count == 4 && windows.flatMap { $0 }.reduce(0, +) == 1000)
    #expect(plan.windows(sampleCount: 1000, dropLast: true).count == 3)
    // What each layer's forward leaves for backward: the ReLUs keep their outputs (the next
    // products' inputs); the products' outputs are freed once the ReLUs have read them.
    #expect(plan.layerActivations.map(\.position) == [1, 3])
  }

  @Test func planningIsFast() throws {
    // Not a benchmark: a bound loose enough for a debug build on a loaded machine.
    let estimator = try estimator("linear(784,512) relu linear(512,512) relu linear(512,10)", width: 784)
    let clock = ContinuousClock()
    let elapsed = try clock.measure { _ = try Planner.plan(estimator: estimator, targetBatch: 4096, budget: .mb(64)) }
    #expect(elapsed < .seconds(2))
  }
}

@Suite("Prediction for convolutional networks")
struct ConvolutionalPredictionTests {
  @Test(
    .measuresMemory,
    arguments: [
      ("conv2d(1,8,3,padding=1) relu maxpool2d(2) flatten linear(128,10)", [1, 8, 8], "adam"),
      (
        "conv2d(3,16,3,padding=1) relu conv2d(16,16,3,stride=2,padding=1) relu adaptiveavgpool2d(1) flatten linear(16,10)",
        [3, 16, 16], "sgd-momentum"
      ),
      ("conv2d(1,4,3,bias=false) tanh avgpool2d(2) flatten linear(144,3)", [1, 14, 14], "adamw"),
      (
        "conv2d(3,16,3,padding=1,bias=false) batchnorm2d(16) relu maxpool2d(2) conv2d(16,32,3,padding=1) batchnorm2d(32) relu adaptiveavgpool2d(1) flatten linear(32,16) batchnorm1d(16) relu linear(16,10)",
        [3, 16, 16], "adam"
      ),
    ])
  func predictionIsWithinTwoPercent(model text: String, shape: [Int], optimizer: String) throws {
    let estimator = try MemoryEstimator(
      model: try shapeOnlyModel(text), sampleShape: shape, loss: .crossEntropy, optimizer: makeOptimizer(optimizer))
    let measurement = try MemoryMeasurement(
      model: try ModelSpecification(parsing: text).build(seed: 0), optimizer: makeOptimizer(optimizer),
      loss: .crossEntropy,
      sampleShape: shape)
    for m in [1, 5, 32, 128, 512] {
      let predicted = estimator.estimate(microBatch: m).peakBytes
      let measured = measurement.peakBytes(microBatch: m)
      #expect(
        abs(Double(predicted - measured)) / Double(measured) <= 0.02,
        "\(text) m=\(m): predicted \(predicted), measured \(measured)")
    }
  }
}

/// Convolutions over small planes unfold several samples per product: predicted exactly,
/// a part of the budget, and given up by the planner where it would cost samples.
@Suite("Unfolding several samples per product")
struct UnfoldingTogetherTests {
  static let spec = "conv2d(4,16,3,padding=1) relu conv2d(16,16,3,padding=1) relu maxpool2d(2) flatten linear(64,10)"

  @Test(.measuresMemory) func predictedExactlyAndKeptOnlyWhereItCostsNoSamples() throws {
    // 4×4 planes: four samples per product, the last group smaller at 3, 6 and 9 samples.
    #expect(Conv2d.samplesPerProduct(plane: 16) == 4 && Conv2d.samplesPerProduct(plane: 64) == 1)
    var peaks: [Bool: Int] = [:]
    for together in [true, false] {
      let shapeModel = try shapeOnlyModel(Self.spec)
      shapeModel.unfoldsSamplesTogether = together
      let estimator = try MemoryEstimator(
        model: shapeModel, sampleShape: [4, 4, 4], loss: .crossEntropy, optimizer: try SGD(learningRate: 0.1))
      let real = try ModelSpecification(parsing: Self.spec).build(seed: 0)
      Planner.applySameChoices(as: shapeModel, to: real)
      #expect(real.unfoldsSamplesTogether == together)
      let measurement = try MemoryMeasurement(
        model: real, optimizer: try SGD(learningRate: 0.1), loss: .crossEntropy, sampleShape: [4, 4, 4])
      for m in [1, 3, 4, 6, 9] {
        let predicted = estimator.estimate(microBatch: m).peakBytes
        #expect(predicted == measurement.peakBytes(microBatch: m), "together \(together), m=\(m)")
      }
      peaks[together] = estimator.estimate(microBatch: 8).peakBytes
    }
    #expect(peaks[true]! > peaks[false]!, "the wider workspace: \(peaks)")
    // Room for the whole window: together. Room for 8 samples only one at a time: apart, 8.
    let shapeModel = try shapeOnlyModel(Self.spec)
    let estimator = try MemoryEstimator(
      model: shapeModel, sampleShape: [4, 4, 4], loss: .crossEntropy, optimizer: try SGD(learningRate: 0.1))
    let roomy = try Planner.plan(estimator: estimator, targetBatch: 8, budget: .bytes(peaks[true]!), marginBytes: 0)
    #expect(roomy.microBatch == 8 && shapeModel.unfoldsSamplesTogether == true)
    let tight = try Planner.plan(estimator: estimator, targetBatch: 8, budget: .bytes(peaks[false]!), marginBytes: 0)
    #expect(tight.microBatch == 8 && shapeModel.unfoldsSamplesTogether == false)
    #expect(tight.predictedPeakBytes == peaks[false]!)
    // And back, when the budget allows it again.
    _ = try Planner.plan(estimator: estimator, targetBatch: 8, budget: .bytes(peaks[true]!), marginBytes: 0)
    #expect(shapeModel.unfoldsSamplesTogether == true)
  }

  /// Whether any convolution groups samples follows from the sample's planes, so the
  /// planner searches again without grouping only where a convolution groups.
  @Test func groupingFollowsThePlanes() throws {
    let model = try shapeOnlyModel(Self.spec)
    #expect(model.convolutionsGroupSamples(forInput: [4, 4, 4]))
    // 16×16 planes: 256 positions, one sample per product (and a linear layer of the wrong width).
    #expect(!model.convolutionsGroupSamples(forInput: [4, 16, 16]))
    let strided = try shapeOnlyModel("conv2d(4,8,3,padding=1) relu conv2d(8,8,3,stride=2,padding=1) flatten linear(128,10)")
    #expect(strided.convolutionsGroupSamples(forInput: [4, 8, 8]), "the strided convolution's 4×4 output plane")
    #expect(!(try shapeOnlyModel("linear(4,2)")).convolutionsGroupSamples(forInput: [4]))
    #expect(!model.convolutionsGroupSamples(forInput: [3, 4, 4]), "a shape the model does not take")
  }
}
