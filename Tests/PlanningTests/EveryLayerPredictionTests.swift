import GradAccum
import Testing
import _TestSupport

/// Every layer kind, every loss, each optimizer: the prediction equals the measurement to
/// the byte. A kernel that allocates anything (a Swift array, a BLAS buffer) that the
/// shape-only trace does not see fails here.
@Suite("Every layer predicted to the byte")
struct EveryLayerPredictionTests {
  static let cases: [(model: String, shape: [Int], loss: String, optimizer: String)] = [
    ("linear(6,9) relu linear(9,4,bias=false) tanh linear(4,3)", [6], "cross-entropy", "sgd-momentum"),
    ("linear(6,9) gelu dropout(0.2) linear(9,1) sigmoid", [6], "bce", "adam"),
    ("linear(6,9) layernorm(9) batchnorm1d(9) linear(9,2)", [6], "mse", "adamw"),
    ("conv2d(1,5,3,padding=1) relu maxpool2d(2) conv2d(5,7,3,padding=1) adaptiveavgpool2d(1) flatten linear(7,3)",
      [1, 8, 8], "cross-entropy", "adam"),
    ("conv2d(2,4,3,stride=2,dilation=2,padding=2,bias=false) batchnorm2d(4) avgpool2d(2,1) adaptiveavgpool2d(3,2) flatten linear(24,3)",
      [2, 9, 9], "mse", "sgd"),
    ("conv2d(3,6,2) maxpool2d(3,2) flatten linear(24,2)", [3, 7, 7], "cross-entropy", "adamw"),
    // The global average's backward broadcasts at the step's peak.
    ("conv2d(1,5,3,padding=1) adaptiveavgpool2d(1) flatten linear(5,2)", [1, 8, 8], "cross-entropy", "sgd"),
    // Token models, with dropout inside the block (three masks kept for backward).
    ("embedding(12,8) positionalembedding(9,8) transformerblock(8,2,ff=12,dropout=0.1) layernorm(8) gelu dropout(0.2) linear(8,12)",
      [9], "token-cross-entropy", "adamw"),
    ("embedding(12,8) positionalembedding(9,8) transformerblock(8,4) transformerblock(8,1,ff=4) linear(8,12,bias=false)",
      [7], "token-cross-entropy", "sgd-momentum"),
    // Elementwise work large enough to be split between two threads (ParallelWork): the
    // hand-over's own bytes are traced too.
    ("linear(64,2048) relu linear(2048,2048) gelu linear(2048,40)", [64], "cross-entropy", "sgd"),
    ("conv2d(3,8,3,padding=1) relu maxpool2d(2) flatten linear(512,5)", [3, 16, 16], "cross-entropy", "adam"),
    // Per-sample products that OpenBLAS would thread (32·256·288 multiply-adds), run on one
    // thread each while two samples run at once: traced as one-thread products.
    ("conv2d(32,32,3,padding=1) relu maxpool2d(2) flatten linear(2048,3)", [32, 16, 16], "cross-entropy", "sgd"),
    ("embedding(300,32) positionalembedding(64,32) transformerblock(32,2) linear(32,300)", [64],
      "token-cross-entropy", "adam"),
  ]

  /// Micro-batches whose products the process has not met yet: they are probed during the
  /// trace, whose bookkeeping must not count as the step's bytes (the trace is made again).
  /// The three sizes run at once, so that the probe table grows while they trace.
  @Test(.measuresMemory, arguments: [128, 160, 300])
  func newProductsArePredictedExactly(microBatch: Int) throws {
    let text = "linear(64,512) relu linear(512,512) relu linear(512,8)"
    let estimator = try MemoryEstimator(
      model: try shapeOnlyModel(text), sampleShape: [64], targetShape: [], loss: .crossEntropy,
      optimizer: makeOptimizer("sgd"))
    let measurement = try MemoryMeasurement(
      model: try ModelSpecification(parsing: text).build(seed: 0), optimizer: makeOptimizer("sgd"),
      loss: .crossEntropy, sampleShape: [64])
    let predicted = estimator.estimate(microBatch: microBatch).peakBytes
    let measured = measurement.peakBytes(microBatch: microBatch)
    #expect(predicted == measured, "m=\(microBatch): predicted \(predicted), measured \(measured)")
  }

  @Test(.measuresMemory, arguments: cases)
  func predictionEqualsMeasurement(model text: String, shape: [Int], lossName: String, optimizer: String) throws {
    let loss: Loss =
      switch lossName {
      case "mse": .meanSquaredError
      case "bce": .binaryCrossEntropy
      case "token-cross-entropy": .tokenCrossEntropy
      default: .crossEntropy
      }
    let shapeModel = try shapeOnlyModel(text)
    let outputShape = try shapeModel.outputShape(forInput: shape)
    let estimator = try MemoryEstimator(
      model: shapeModel, sampleShape: shape, targetShape: loss.targetShape(outputShape: outputShape), loss: loss,
      optimizer: makeOptimizer(optimizer))
    let measurement = try MemoryMeasurement(
      model: try ModelSpecification(parsing: text).build(seed: 0), optimizer: makeOptimizer(optimizer), loss: loss,
      sampleShape: shape)
    for m in [1, 3, 17] {
      let predicted = estimator.estimate(microBatch: m).peakBytes
      let measured = measurement.peakBytes(microBatch: m)
      #expect(predicted == measured, "\(text) \(lossName) \(optimizer) m=\(m): predicted \(predicted), measured \(measured)")
    }
  }
}
