import ArgumentParser
import Foundation
import GradAccum

struct DemoCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "demo",
    abstract:
      "Show that accumulation reproduces big-batch training (batch 40 against 10 × 4), then train digits classifiers and a byte-level language model under budgets.",
    discussion: """
      The linear-regression experiment of the gradient-accumulation article: 1000 samples \
      with two N(0,1) features, y = -2·x1 + 3.4·x2 + 4.2 + N(0, 0.01), a zero-initialised \
      linear(2,1), mean squared error, SGD with learning rate 0.01, no shuffle, 3 epochs.
      """)

  @Option(parsing: .unconditional, help: "Seed of the generated data.")
  var seed: UInt64 = 2024

  @Option(parsing: .unconditional, help: "Epochs of the language model (fewer for a quick look).")
  var languageModelEpochs = 30

  func validate() throws {
    guard languageModelEpochs >= 1 else {
      throw UsageError("--language-model-epochs is \(languageModelEpochs), expected an integer ≥ 1")
    }
  }

  func run() throws {
    try requireMemoryMeasurement()
    let dataset = ArticleExperiment.dataset(seed: seed)
    print("Linear regression, 1000 samples, y = -2·x1 + 3.4·x2 + 4.2 + noise; SGD lr 0.01, 3 epochs, no shuffle")
    print("")
    let big = try ArticleExperiment.train(dataset, microBatch: 40, accumulationCount: 1)
    let accumulated = try ArticleExperiment.train(dataset, microBatch: 10, accumulationCount: 4)
    print("Epoch loss: the mean squared error of the epoch's samples (÷ 40: the article's per-sample figure).")
    print("")
    print("epoch   batch 40 loss   (÷ 40)      10 × 4 accumulated   (÷ 40)      relative difference")
    for epoch in 0..<3 {
      let a = big.report.epochLosses[epoch], b = accumulated.report.epochLosses[epoch]
      print(
        String(
          format: "%5d   %13.7f   %-9.7f   %18.7f   %-9.7f   %19.2e", epoch + 1, a, a / 40, b, b / 40,
          Double(abs(a - b) / max(abs(a), 1e-12))))
    }
    print("")
    print("final weights   batch 40                   10 × 4")
    for (name, a, b) in zip3(big.weights, accumulated.weights) {
      print(
        name.padding(toLength: 16, withPad: " ", startingAt: 0)
          + format(a).padding(toLength: 27, withPad: " ", startingAt: 0) + format(b))
    }
    let difference = maximumRelativeDifference(big.weights.flatMap(\.1), accumulated.weights.flatMap(\.1))
    print("")
    print(String(format: "largest relative difference of the final weights: %.2e", difference))
    print("(target: -2, 3.4 and 4.2; both runs take the same 75 optimizer steps of 40 samples each)")
    try digits()
    try languageModel()
  }

  /// A byte-level language model on the BSD fortunes about computers (1,051 texts of 9 to
  /// 1,778 bytes, cut to 128): target batch 32 under a budget where windows are composed by
  /// length; prints the plan, the falling loss and a generated sample.
  func languageModel() throws {
    guard let url = Bundle.module.url(forResource: "fortunes-computers", withExtension: "txt") else {
      throw UsageError("the fortunes text is missing from the installation (fortunes-computers.txt resource)")
    }
    let data = try userFacing { try SequenceReader.loadText(path: url.path, separator: "%") }.truncated(to: 128)
    let text = "embedding(256,64) positionalembedding(128,64) transformerblock(64,4) layernorm(64) linear(64,256)"
    let budget = MemoryBudget.mb(6)
    let epochs = languageModelEpochs
    print("")
    print(
      "Byte-level language model on \(data.count) fortunes about computers (BSD fortune data, cut to 128 bytes): \(text), AdamW, target batch 32, budget \(MemoryBudget.format(bytes: budget.bytes))"
    )
    let model = try userFacing { try ModelSpecification(parsing: text) }.build(seed: 1)
    var options = TrainerOptions()
    options.seed = 3
    let trainer = try userFacing {
      try Trainer(
        model: model, optimizer: try AdamW(learningRate: 1e-2), loss: .tokenCrossEntropy, targetBatch: 32,
        memoryBudget: budget, options: options)
    }
    if let plan = try userFacing({ try trainer.sequencePlan(for: data) }) { print(plan.summary) }
    var tokens = 0
    let start = Date()
    trainer.onEvent = { event in
      switch event {
      case .step(let record): tokens += record.tokens ?? 0
      case .epoch(let number, let loss) where number == 1 || number % 5 == 0 || number == epochs:
        print(
          String(
            format: "epoch %2d/%d  token loss %.4f  (%.0f tokens/s)", number, epochs, loss,
            Double(tokens) / Date().timeIntervalSince(start)))
      case .warning(let message): print("note: \(message)")
      default: break
      }
    }
    print("")
    let report = try userFacing { try trainer.fit(data, epochs: epochs) }
    print(
      "max measured peak \(report.maxPeakBytes) of \(budget.bytes) bytes, \(report.budgetViolations) budget violations"
    )
    let prompt = Array("The computer ".utf8).map(Int.init)
    let sample = model.generate(
      prompt: prompt, count: 100, sampling: TokenSampling(temperature: 0.7, topK: 8, seed: 1), contextLength: 128)
    print("")
    print("generated (temperature 0.7, top-k 8):")
    print(String(decoding: sample.map(UInt8.init), as: UTF8.self))
  }

  /// Digits classifiers (an MLP, then a CNN with batch normalization) trained with a target
  /// batch of 64 under budgets that force accumulation; prints the plans and the held-out
  /// accuracy.
  func digits() throws {
    guard let url = Bundle.module.url(forResource: "digits", withExtension: "csv") else {
      throw UsageError("the digits data set is missing from the installation (digits.csv resource)")
    }
    let all = try userFacing { try CSVReader.load(path: url.path, labelKind: .classIndex) }
    // Pixels 0–16 scaled to [0, 1]; a seeded split into 1497 training and 300 held-out samples.
    let scaled = TensorDataset(inputs: all.inputs * (1 / 16), targets: all.targets)
    let order = DataLoader.sampleOrder(count: scaled.count, epoch: 0, shuffle: true, seed: 7)
    let training = TensorDataset(batch: scaled.batch(at: Array(order[300...])))
    let heldOut = TensorDataset(batch: scaled.batch(at: Array(order[..<300])))
    try digits(
      model: "linear(64,64) relu linear(64,10)", sampleShape: [64], budget: .kb(110), training: training,
      heldOut: heldOut)
    // The same pixels as 1×8×8 images.
    func images(_ dataset: TensorDataset) -> TensorDataset {
      TensorDataset(inputs: dataset.inputs.reshaped(to: [dataset.count, 1, 8, 8]), targets: dataset.targets)
    }
    try digits(
      model:
        "conv2d(1,16,3,padding=1) batchnorm2d(16) relu maxpool2d(2) conv2d(16,32,3,padding=1) batchnorm2d(32) relu maxpool2d(2) flatten linear(128,10)",
      sampleShape: [1, 8, 8], budget: .kb(400), training: images(training), heldOut: images(heldOut))
  }

  /// Trains `model` with Adam (learning rate 0.01) for 15 epochs, target batch 64, under
  /// `budget`, and evaluates it on `heldOut`.
  func digits(
    model text: String, sampleShape: [Int], budget: MemoryBudget, training: TensorDataset, heldOut: TensorDataset
  ) throws {
    print("")
    print(
      "Handwritten digits (UCI, 8×8 pixels): \(text), Adam, target batch 64, budget \(MemoryBudget.format(bytes: budget.bytes))"
    )
    let model = try userFacing { try ModelSpecification(parsing: text) }.build(seed: 1)
    var options = TrainerOptions()
    options.seed = 3
    options.inputShape = sampleShape
    let trainer = try userFacing {
      try Trainer(
        model: model, optimizer: try Adam(learningRate: 0.01), loss: .crossEntropy, targetBatch: 64,
        memoryBudget: budget, options: options)
    }
    print(trainer.plan)
    trainer.onEvent = { event in
      switch event {
      case .epoch(let number, let loss) where number % 5 == 0: print("epoch \(number)/15  loss \(loss)")
      case .warning(let message): print("note: \(message)")
      default: break
      }
    }
    print("")
    let report = try userFacing { try trainer.fit(training, epochs: 15) }
    let evaluation = trainer.evaluate(heldOut)
    print(
      String(
        format:
          "held-out accuracy %.1f%% (loss %.4f) on %d samples; max measured peak %d of %d bytes, %d budget violations",
        Double(evaluation.accuracy ?? 0) * 100, evaluation.loss, heldOut.count, report.maxPeakBytes,
        trainer.memoryBudget!.bytes, report.budgetViolations))
  }

  func format(_ values: [Float]) -> String {
    "[" + values.map { String(format: "%.6f", $0) }.joined(separator: ", ") + "]"
  }

  func zip3(_ a: [(String, [Float])], _ b: [(String, [Float])]) -> [(String, [Float], [Float])] {
    zip(a, b).map { ($0.0, $0.1, $1.1) }
  }

  func maximumRelativeDifference(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).map { abs($0 - $1) / max(abs($0), 1e-12) }.max() ?? 0
  }
}

/// The article's experiment, built from the library.
enum ArticleExperiment {
  /// 1000 samples, two N(0,1) features, `y = -2·x1 + 3.4·x2 + 4.2 + N(0, 0.01)`.
  static func dataset(seed: UInt64) -> TensorDataset {
    var generator = RandomGenerator(seed: seed)
    let features = Tensor(normalShape: [1000, 2], generator: &generator)
    let targets = Tensor(uninitializedShape: [1000])
    let x = features.buffer, y = targets.mutableBuffer
    for i in 0..<1000 {
      y[i] = -2 * x[2 * i] + 3.4 * x[2 * i + 1] + 4.2 + generator.normal(standardDeviation: 0.01)
    }
    return TensorDataset(inputs: features, targets: targets)
  }

  /// Trains a zero-initialised `linear(2,1)` for 3 epochs; returns the report and weights.
  static func train(
    _ dataset: TensorDataset, microBatch: Int, accumulationCount: Int
  ) throws -> (report: TrainingReport, weights: [(String, [Float])]) {
    let model = Sequential { Linear(inputSize: 2, outputSize: 1, seed: 0) }
    for parameter in model.parameters { parameter.mutableBuffer.update(repeating: 0) }
    var options = TrainerOptions()
    options.shuffle = false
    let trainer = try Trainer(
      model: model, optimizer: try SGD(learningRate: 0.01), loss: .meanSquaredError, microBatch: microBatch,
      accumulationCount: accumulationCount, options: options)
    let report = try trainer.fit(dataset, epochs: 3)
    return (report, model.namedParameters.map { ($0.name, $0.tensor.values) })
  }
}
