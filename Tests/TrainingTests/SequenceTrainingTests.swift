import GradAccum
import Testing
import _TestSupport

/// Next-token training on equal-length sequences (variable lengths and sequence data files
/// come with the rest of the sequence work).
@Suite("Token cross-entropy")
struct SequenceTrainingTests {
  static let spec = "embedding(12,8) positionalembedding(6,8) transformerblock(8,2,ff=16) layernorm(8) linear(8,12)"

  /// 8 sequences of 6 tokens; some labels masked (−100), unevenly across samples.
  static func dataset() -> TensorDataset {
    var generator = RandomGenerator(seed: 4)
    let ids = (0..<48).map { _ in Float(generator.next() % 12) }
    var labels = ids
    for position in [1, 2, 3, 13, 29, 30, 31, 32, 33, 47] { labels[position] = -100 }
    return TensorDataset(inputs: Tensor(ids, shape: [8, 6]), targets: Tensor(labels, shape: [8, 6]))
  }

  @Test func positionTPredictsLabelTPlusOne() {
    let logits = randomTensor([2, 3, 5], seed: 2)
    let labels = Tensor([1, 4, 2, 0, -100, 3], shape: [2, 3])
    let loss = tokenCrossEntropy(logits: logits, labels: labels, reduction: .sum)
    // By hand: rows (0,0)→4, (0,1)→2, (1,1)→3; (1,0)'s label is ignored, last positions predict nothing.
    let flat = logits.reshaped(to: [6, 5])
    let expected = crossEntropy(logits: flat, labels: [4, 2, -100, -100, 3, -100], reduction: .sum)
    #expect(abs(loss.scalarValue - expected.scalarValue) < 1e-5)
    #expect(Loss.tokenCrossEntropy.itemCount(targets: labels) == 3)
    checkGradients(of: [logits]) { tokenCrossEntropy(logits: $0[0], labels: labels, reduction: .sum) }
  }

  /// Rule 3 with tokens: any split of a window gives the window's gradient, masked labels
  /// spread unevenly over the micro-batches included. (Under AdamW the attention's key bias
  /// is left out of the comparison: its true gradient is zero, so Adam's normalized steps
  /// follow rounding noise there.)
  @Test(arguments: ["sgd-momentum", "adamw"])
  func accumulationEqualsOneBatchOverTokens(optimizerName: String) throws {
    func train(microBatch: Int, accumulationCount: Int) throws -> [(String, [Float])] {
      let model = try ModelSpecification(parsing: Self.spec).build(seed: 1)
      let optimizer: Optimizer =
        optimizerName == "adamw" ? try AdamW(learningRate: 0.01) : try SGD(learningRate: 0.1, momentum: 0.9)
      let trainer = try Trainer(
        model: model, optimizer: optimizer, loss: .tokenCrossEntropy, microBatch: microBatch,
        accumulationCount: accumulationCount, options: TrainerOptions(shuffle: false, inputShape: [6]))
      try trainer.fit(Self.dataset(), epochs: 3)
      return model.namedParameters.map { name, tensor in
        // in_proj_bias rows: queries, keys, values; the keys' slice is dropped.
        name == "2.attn.in_proj_bias" ? (name, Array(tensor.values[0..<8]) + Array(tensor.values[16..<24])) : (name, tensor.values)
      }
    }
    let whole = try train(microBatch: 4, accumulationCount: 1).map(\.1)
    expectSameParameters(try train(microBatch: 1, accumulationCount: 4).map(\.1), whole, relative: 1e-4)
    expectSameParameters(try train(microBatch: 2, accumulationCount: 2).map(\.1), whole, relative: 1e-4)
  }

  /// A window whose labels are all ignored changes nothing and is reported (rather than
  /// dividing by zero predicted tokens).
  @Test func aWindowWithNothingToPredictChangesNothing() throws {
    let data = Self.dataset()
    var labels = data.targets.values
    for position in 0..<12 { labels[position] = -100 }  // the first window of 2 samples
    let masked = TensorDataset(inputs: data.inputs, targets: Tensor(labels, shape: [8, 6]))
    let model = try ModelSpecification(parsing: Self.spec).build(seed: 1)
    let trainer = try Trainer(
      model: model, optimizer: try SGD(learningRate: 0.1), loss: .tokenCrossEntropy, microBatch: 2,
      options: TrainerOptions(shuffle: false, inputShape: [6]))
    var warnings: [String] = []
    trainer.onEvent = { if case .warning(let text) = $0 { warnings.append(text) } }
    let report = try trainer.fit(masked, epochs: 1)
    #expect(report.steps == 3 && report.skippedSteps == 1)
    #expect(report.epochLosses.allSatisfy { $0.isFinite })
    #expect(warnings.contains { $0.contains("no label to predict") })
  }

  /// The planner predicts a transformer's step to the byte.
  @Test(.measuresMemory) func aTransformerStepIsPredictedExactly() throws {
    let shapeModel = ShapeTracing.run(AllocationTrace()) { try! ModelSpecification(parsing: Self.spec).build(seed: 0) }
    let estimator = try MemoryEstimator(
      model: shapeModel, sampleShape: [6], targetShape: [6], loss: .tokenCrossEntropy, optimizer: try AdamW())
    let measurement = try MemoryMeasurement(
      model: try ModelSpecification(parsing: Self.spec).build(seed: 0), optimizer: try AdamW(),
      loss: .tokenCrossEntropy, sampleShape: [6])
    for m in [1, 3, 8] {
      #expect(estimator.estimate(microBatch: m).peakBytes == measurement.peakBytes(microBatch: m), "m=\(m)")
    }
  }

  /// Dropout inside the block: off in evaluation mode (equal to the same weights without
  /// dropout), on in training, and the same masks again from the same random state.
  @Test func dropoutInsideTheBlock() throws {
    let withDropout = try ModelSpecification(parsing: "embedding(12,8) positionalembedding(6,8) transformerblock(8,2,ff=16,dropout=0.3) linear(8,12)").build(seed: 1)
    let plain = try ModelSpecification(parsing: "embedding(12,8) positionalembedding(6,8) transformerblock(8,2,ff=16) linear(8,12)").build(seed: 1)
    for ((_, a), (_, b)) in zip(withDropout.namedParameters, plain.namedParameters) { b.assign(from: a) }
    let ids = Tensor([1, 2, 3, 4, 5, 6, 7, 8], shape: [2, 4])
    let state = withDropout.randomStates
    #expect(state.count == 1)
    let first = withDropout(ids).values
    #expect(first != plain(ids).values)
    withDropout.randomStates = state
    #expect(withDropout(ids).values == first)
    withDropout.setTraining(false)
    #expect(withDropout(ids).values == plain(ids).values)
    #expect(throws: ModelSpecificationError.self) { try ModelSpecification(parsing: "transformerblock(8,2,dropout=1)") }
    #expect("\(withDropout.layers[2])" == "transformerblock(8,2,ff=16,dropout=0.3)")
  }
}
