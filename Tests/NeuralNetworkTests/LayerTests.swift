import NeuralNetwork
import Tensors
import Testing
import _TestSupport

@Suite("Layers")
struct LayerTests {
  @Test func sequentialNamesParametersLikePyTorch() {
    let model = Sequential {
      Linear(inputSize: 4, outputSize: 3, seed: 1)
      ReLU()
      Linear(inputSize: 3, outputSize: 2, bias: false, seed: 2)
      Dropout(probability: 0.1)
      Linear(inputSize: 2, outputSize: 1, seed: 3)
    }
    #expect(model.namedParameters.map(\.name) == ["0.weight", "0.bias", "2.weight", "4.weight", "4.bias"])
    #expect(model.namedParameters.map(\.tensor.shape) == [[3, 4], [3], [2, 3], [1, 2], [1]])
    #expect(model.parameterCount == 12 + 3 + 6 + 2 + 1)
  }

  @Test func linearComputesXWTransposedPlusBias() {
    let layer = Linear(inputSize: 2, outputSize: 3, seed: 0)
    layer.weight.mutableBuffer.update(fromContentsOf: [1, 2, 3, 4, 5, 6] as [Float])
    layer.bias!.mutableBuffer.update(fromContentsOf: [0.5, -1, 2] as [Float])
    let x = Tensor([1, -1, 2, 0.5], shape: [2, 2])
    // Row 1: [1·1 + -1·2, 1·3 + -1·4, 1·5 + -1·6] + b = [-0.5, -2, 1]
    // Row 2: [2 + 1, 6 + 2, 10 + 3] + b = [3.5, 7, 15]
    #expect(layer(x).values == [-0.5, -2, 1, 3.5, 7, 15])
  }

  @Test func linearInitializationIsPyTorchsUniformBound() {
    let layer = Linear(inputSize: 100, outputSize: 50, seed: 5)
    let bound: Float = 0.1
    #expect(layer.weight.values.allSatisfy { abs($0) <= bound })
    #expect(layer.bias!.values.allSatisfy { abs($0) <= bound })
    // A uniform(-b, b) sample of 5000 values has a standard deviation near b/√3.
    let values = layer.weight.values
    let variance = values.map { $0 * $0 }.reduce(0, +) / Float(values.count)
    #expect(abs(variance.squareRoot() - bound / Float(3).squareRoot()) < 0.003)
    // Seeded: the same seed gives the same weights, another seed others.
    #expect(Linear(inputSize: 100, outputSize: 50, seed: 5).weight.values == values)
    #expect(Linear(inputSize: 100, outputSize: 50, seed: 6).weight.values != values)
  }

  @Test func gradientsOfLayersMatchFiniteDifferences() {
    let linear = Linear(inputSize: 3, outputSize: 2, seed: 4)
    let x = randomTensor([4, 3])
    checkGradients(of: [x, linear.weight, linear.bias!]) { inputs in
      let layer = Linear(inputSize: 3, outputSize: 2, seed: 0)
      layer.weight.assign(from: inputs[1])
      layer.bias!.assign(from: inputs[2])
      return Tensor.matmul(inputs[0], inputs[1], transposingRight: true) + inputs[2]
    }
    for activation in [ReLU(), Tanh(), Sigmoid(), GELU()] as [any Layer] {
      checkGradients(of: [randomTensor([3, 4], low: 0.1, high: 2)]) { activation($0[0]) }
    }
    checkGradients(of: [randomTensor([2, 3, 2])]) { Flatten()($0[0]) }
  }

  @Test func dropoutScalesKeptElementsAndIsIdentityInEvaluation() {
    let dropout = Dropout(probability: 0.25, seed: 3)
    let x = Tensor(repeating: 1, shape: [100, 100])
    let y = dropout(x).values
    #expect(Set(y) == [0, Float(1) / 0.75])
    let dropped = Float(y.filter { $0 == 0 }.count) / Float(y.count)
    #expect(abs(dropped - 0.25) < 0.02)
    dropout.setTraining(false)
    #expect(dropout(x) === x)
    // Seeded: the same seed gives the same mask.
    #expect(Dropout(probability: 0.25, seed: 3)(x).values == y)
  }

  @Test func dropoutGradientFollowsItsMask() {
    let dropout = Dropout(probability: 0.5, seed: 9)
    let x = Tensor(repeating: 2, shape: [4, 4], requiresGradient: true)
    let y = dropout(x)
    y.sum().backward()
    #expect(x.gradient!.values == y.values.map { $0 / 2 })
  }

  @Test func shapesAreCheckedWithClearErrors() throws {
    let model = try ModelSpecification(parsing: "linear(4,3) relu linear(3,2)").build(seed: 0)
    #expect(try model.outputShape(forInput: [4]) == [2])
    #expect(throws: ShapeError.featureMismatch(layer: "linear(4,3)", expected: 4, actual: [5])) {
      try model.outputShape(forInput: [5])
    }
    // A linear layer acts on the last axis (tokens [s, in] too), as nn.Linear does.
    #expect(throws: ShapeError.featureMismatch(layer: "linear(4,3)", expected: 4, actual: [2, 2])) {
      try model.outputShape(forInput: [2, 2])
    }
    #expect(try model.outputShape(forInput: [3, 4]) == [3, 2])
    #expect(throws: ShapeError.rankMismatch(layer: "linear(4,3)", expectedRank: 1, actual: [])) {
      try model.outputShape(forInput: [])
    }
    #expect(try Flatten().outputShape(forInput: [2, 2]) == [4])
  }
}

@Suite("Model specification")
struct ModelSpecificationTests {
  @Test func parsesLayersArgumentsAndKeywords() throws {
    let specification = try ModelSpecification(
      parsing: " linear(784, 512) ReLU dropout(p=0.2) linear(512,10,bias=false)  gelu ")
    #expect(specification.layers.map(\.name) == ["linear", "relu", "dropout", "linear", "gelu"])
    let model = specification.build(seed: 1)
    #expect(model.namedParameters.map(\.name) == ["0.weight", "0.bias", "3.weight"])
    #expect(try model.outputShape(forInput: [784]) == [10])
  }

  /// Every registered layer builds a layer of its own kind: a name the registry lacks is an
  /// unknown layer, never a silent stand-in.
  @Test(arguments: [
    ("linear(3,2)", "linear(3,2)"), ("conv2d(1,2,3,padding=1)", "conv2d"), ("maxpool2d(2)", "maxpool2d"),
    ("avgpool2d(2,1)", "avgpool2d"), ("adaptiveavgpool2d(1)", "adaptiveavgpool2d(1)"),
    ("adaptiveavgpool2d(2,3)", "adaptiveavgpool2d(2,3)"), ("batchnorm1d(4)", "batchnorm1d"),
    ("batchnorm2d(4,momentum=none)", "batchnorm2d"), ("layernorm(4)", "layernorm"), ("relu", "relu"),
    ("tanh", "tanh"), ("sigmoid", "sigmoid"), ("gelu", "gelu"), ("flatten", "flatten"), ("dropout(0.1)", "dropout"),
    ("embedding(10,4)", "embedding(10,4)"), ("positionalembedding(8,4)", "positionalembedding(8,4)"),
    ("transformerblock(8,2)", "transformerblock(8,2)"), ("transformerblock(8,2,ff=12)", "transformerblock(8,2,ff=12)"),
  ])
  func everyRegisteredLayerBuildsItsOwnKind(text: String, description: String) throws {
    let model = try ModelSpecification(parsing: text).build(seed: 0)
    let layer = try #require(model.layers.first)
    #expect("\(layer)".hasPrefix(description), "\(text) built \(layer)")
  }

  @Test func theRegistryNamesEveryKnownLayerOnce() {
    #expect(Set(ModelSpecification.knownLayers).count == ModelSpecification.knownLayers.count)
    #expect(ModelSpecification.knownLayers.count == 17)
  }

  @Test func sameSeedSameModel() throws {
    let specification = try ModelSpecification(parsing: "linear(3,4) tanh linear(4,2)")
    #expect(
      specification.build(seed: 3).parameters.map(\.values) == specification.build(seed: 3).parameters.map(\.values))
  }

  @Test(arguments: [
    ("", "the model specification is empty"),
    ("   ", "the model specification is empty"),
    ("linear(2,3", "unbalanced parentheses"),
    ("linear(2,3))", "unbalanced parentheses"),
    ("conv9d(1,2)", "unknown layer \"conv9d\" at position 0"),
    ("linear(2)", "expected 2 positional arguments, got 1"),
    ("linear(2,x)", "out_features must be a positive integer, got \"x\""),
    ("linear(0,3)", "in_features must be a positive integer, got \"0\""),
    ("linear(-2,3)", "in_features must be a positive integer"),
    ("linear(2,3,bias=maybe)", "bias must be true or false"),
    ("linear(2,3,colour=red)", "unknown argument \"colour\""),
    ("relu(3)", "expected 0 positional arguments, got 1"),
    ("dropout(1.5)", "p must be a probability in [0, 1)"),
    ("linear(2,,3)", "empty argument"),
    ("linear(2,3)relu", "expected name(arguments)"),
    ("linear(2,3,bias=false,bias=true)", "argument \"bias\" is given twice"),
    ("flatten(1)", "expected 0 positional arguments, got 1"),
    ("conv2d(2,3,3,padding=-1)", "padding must be a non-negative integer"),
    ("batchnorm1d(3,momentum=2)", "momentum must be a number in [0, 1] or none"),
  ])
  func rejectsMalformedSpecifications(text: String, message: String) {
    do {
      _ = try ModelSpecification(parsing: text)
      Issue.record("\"\(text)\" parsed, expected an error containing \(message)")
    } catch {
      #expect(error.description.contains(message), "\(error.description)")
    }
  }
}

@Suite("Convolutional layers")
struct ConvolutionalLayerTests {
  /// A ReLU before max pooling runs after it, on the pooled tensor: the same values and
  /// the same input gradient as the two in their order, bit for bit, with windows of
  /// negative values, zeros, ties and mixed signs; the pooled ReLU's tensor is smaller.
  @Test func reluBeforeMaxPoolingRunsAfterItWithTheSameResults() {
    let values: [Float] = [
      -1, -2, 0, 3, 3, -0.5, 0, 0,
      -3, -4, 1, 3, 2, 1, -0, 0,
      0.5, 0.25, -7, 2, 5, 5, -1, 4,
      -0.5, 0.25, 2, -2, 5, -6, 4, 1,
    ]
    let model = Sequential([ReLU(), Pool2d(.maximum, kernelSize: 2)])
    let x = Tensor(values, shape: [1, 2, 4, 4])
    x.requiresGradient = true
    let y = model(x)
    let seed = Tensor((0..<8).map { Float($0) + 0.5 }, shape: [1, 2, 2, 2])
    y.backward(seed: seed)
    let reference = Tensor(values, shape: [1, 2, 4, 4])
    reference.requiresGradient = true
    let expected = reference.relu().maxPooled2D(kernel: 2)
    expected.backward(seed: seed)
    #expect(y.values == expected.values)
    #expect(x.gradient!.values == reference.gradient!.values)
    #expect(x.gradient!.values.contains { $0 != 0 } && x.gradient!.values.contains(0))
    // Traced, the ReLU's (layer 0's) tensors are the pooled size, 8 floats, not 32.
    let trace = AllocationTrace()
    let shapeModel = ShapeTracing.run(trace) { Sequential([ReLU(), Pool2d(.maximum, kernelSize: 2)]) }
    ShapeTracing.run(trace) { _ = shapeModel(Tensor(uninitializedShape: [1, 2, 4, 4])) }
    let reluSizes = trace.events.compactMap { event -> Int? in
      if case .allocate(_, let count, 0) = event { count } else { nil }
    }
    #expect(!reluSizes.isEmpty && reluSizes.allSatisfy { $0 == 8 }, "\(trace.events)")
    #expect(Sequential.poolsFirst(ReLU(), Pool2d(.maximum, kernelSize: 2)))
    #expect(!Sequential.poolsFirst(ReLU(), Pool2d(.average, kernelSize: 2)))
    #expect(!Sequential.poolsFirst(Pool2d(.maximum, kernelSize: 2), ReLU()))
  }

  @Test func cnnSpecificationNamesAndShapes() throws {
    let specification = try ModelSpecification(
      parsing:
        "conv2d(1,8,3,padding=1) relu maxpool2d(2) conv2d(8,4,3,stride=2,padding=1,bias=false) avgpool2d(2) flatten linear(4,10)"
    )
    let model = specification.build(seed: 1)
    #expect(model.namedParameters.map(\.name) == ["0.weight", "0.bias", "3.weight", "6.weight", "6.bias"])
    #expect(model.namedParameters.map(\.tensor.shape) == [[8, 1, 3, 3], [8], [4, 8, 3, 3], [10, 4], [10]])
    #expect(try model.outputShape(forInput: [1, 8, 8]) == [10])
    #expect(model(Tensor(zeros: [3, 1, 8, 8])).shape == [3, 10])
    let global = try ModelSpecification(parsing: "conv2d(3,5,3) adaptiveavgpool2d(1) flatten").build(seed: 0)
    #expect(try global.outputShape(forInput: [3, 7, 9]) == [5])
    #expect(global(Tensor(zeros: [2, 3, 7, 9])).shape == [2, 5])
    let adaptive = try ModelSpecification(parsing: "conv2d(3,5,3) adaptiveavgpool2d(2,3) flatten").build(seed: 0)
    #expect(try adaptive.outputShape(forInput: [3, 7, 9]) == [30])
    #expect(adaptive(Tensor(zeros: [2, 3, 7, 9])).shape == [2, 30])
  }

  @Test func convolutionInitializationIsPyTorchsUniformBound() {
    let layer = Conv2d(inputChannels: 4, outputChannels: 16, kernelSize: 3, seed: 2)
    let bound = 1 / Float(36).squareRoot()
    #expect(layer.weight.values.allSatisfy { abs($0) <= bound } && layer.bias!.values.allSatisfy { abs($0) <= bound })
    #expect(layer.weight.values.map(abs).max()! > bound * 0.9)
  }

  @Test(arguments: [
    ("conv2d(1,8)", "expected 3 positional arguments, got 2"),
    ("conv2d(1,8,0)", "kernel_size must be a positive integer"),
    ("conv2d(1,8,3,padding=-1)", "padding must be a non-negative integer"),
    ("conv2d(1,8,3,groups=2)", "unknown argument \"groups\""),
    ("maxpool2d()", "expected 1 to 2 positional arguments, got 0"),
    ("adaptiveavgpool2d(0)", "output_size must be a positive integer"),
    ("adaptiveavgpool2d(2,3,4)", "expected 1 to 2 positional arguments, got 3"),
  ])
  func rejectsMalformedLayers(text: String, message: String) {
    do {
      _ = try ModelSpecification(parsing: text)
      Issue.record("\"\(text)\" parsed")
    } catch {
      #expect(error.description.contains(message), "\(error.description)")
    }
  }

  @Test func windowsThatDoNotFitAreShapeErrors() throws {
    let model = try ModelSpecification(parsing: "conv2d(1,2,5) maxpool2d(4)").build(seed: 0)
    #expect(throws: ShapeError.windowTooLarge(layer: "conv2d(1,2,5)", actual: [1, 3, 3])) {
      try model.outputShape(forInput: [1, 3, 3])
    }
    #expect(throws: ShapeError.windowTooLarge(layer: "maxpool2d(4)", actual: [2, 2, 2])) {
      try model.outputShape(forInput: [1, 6, 6])
    }
    #expect(throws: ShapeError.featureMismatch(layer: "conv2d(1,2,5)", expected: 1, actual: [3, 8, 8])) {
      try model.outputShape(forInput: [3, 8, 8])
    }
  }
}

@Suite("Layer normalization")
struct LayerNormTests {
  @Test func normalizesTheLastAxis() throws {
    let layer = LayerNorm(size: 4)
    let y = layer(Tensor([1, 2, 3, 4, -2, 0, 2, 4], shape: [2, 4])).values
    // Row 1: mean 2.5, biased variance 1.25.
    let scale = 1 / Float(1.25 + 1e-5).squareRoot()
    expectClose(Array(y[0..<4]), [-1.5, -0.5, 0.5, 1.5].map { $0 * scale }, relative: 1e-5)
    let row2 = Array(y[4..<8])
    #expect(abs(row2.reduce(0, +)) < 1e-5)
    #expect(layer.namedParameters.map(\.name) == ["weight", "bias"])
    let model = try ModelSpecification(parsing: "linear(3,4) layernorm(4) relu linear(4,2)").build(seed: 0)
    #expect(model.namedParameters.map(\.name) == ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"])
    #expect(throws: ShapeError.self) {
      try ModelSpecification(parsing: "linear(3,5) layernorm(4)").build(seed: 0).outputShape(forInput: [3])
    }
  }

  @Test func gradientsMatchFiniteDifferences() {
    let layer = LayerNorm(size: 5)
    layer.weight.assign(from: randomTensor([5], low: 0.5, high: 1.5, seed: 4))
    layer.bias.assign(from: randomTensor([5], seed: 5))
    // The layer's own parameters are among the checked inputs (perturbed in place).
    checkGradients(of: [randomTensor([3, 5], seed: 3), layer.weight, layer.bias]) { inputs in layer(inputs[0]) }
    // Tokens [b, s, features].
    checkGradients(of: [randomTensor([2, 3, 5], seed: 6), layer.weight, layer.bias]) { inputs in layer(inputs[0]) }
  }
}

@Suite("Batch normalization")
struct BatchNormTests {
  @Test func runningStatisticsFollowPyTorchsUpdate() {
    let layer = BatchNorm1d(features: 2)
    // Channel 0: 1, 3, 5 (mean 3, unbiased variance 4); channel 1: 0, 0, 6 (mean 2, 12).
    _ = layer(Tensor([1, 0, 3, 0, 5, 6], shape: [3, 2]))
    expectClose(layer.runningMean.values, [0.3, 0.2], relative: 1e-6)
    expectClose(layer.runningVariance.values, [0.9 + 0.4, 0.9 + 1.2], relative: 1e-6)
    #expect(layer.batchesTracked.value == 1)
    // A second batch moves them again by momentum 0.1.
    _ = layer(Tensor([1, 0, 3, 0, 5, 6], shape: [3, 2]))
    expectClose(layer.runningMean.values, [0.3 * 0.9 + 0.3, 0.2 * 0.9 + 0.2], relative: 1e-6)
    #expect(layer.batchesTracked.value == 2)
    // Cumulative average (momentum none): the plain mean of the batches seen.
    let cumulative = BatchNorm2d(features: 1, momentum: nil)
    _ = cumulative(Tensor([2, 2, 2, 2], shape: [1, 1, 2, 2]))
    _ = cumulative(Tensor([4, 4, 4, 4], shape: [1, 1, 2, 2]))
    expectClose(cumulative.runningMean.values, [3], relative: 1e-6)
    expectClose(cumulative.runningVariance.values, [0], relative: 1e-6)
  }

  @Test func evaluationUsesRunningStatisticsAndKeepsThem() {
    let layer = BatchNorm2d(features: 2)
    layer.runningMean.mutableBuffer.update(fromContentsOf: [1, -1])
    layer.runningVariance.mutableBuffer.update(fromContentsOf: [4, 0.25])
    layer.weight.mutableBuffer.update(fromContentsOf: [2, 1])
    layer.bias.mutableBuffer.update(fromContentsOf: [0, 3])
    layer.setTraining(false)
    let x = Tensor([3, 5, 0, 1], shape: [1, 2, 1, 2])
    let s0 = 2 / Float(4 + 1e-5).squareRoot(), s1 = 1 / Float(0.25 + 1e-5).squareRoot()
    expectClose(layer(x).values, [2 * s0, 4 * s0, 3 + s1, 3 + 2 * s1], relative: 1e-6)
    #expect(layer.runningMean.values == [1, -1])
    #expect(layer.batchesTracked.value == 0)
    checkGradients(of: [randomTensor([2, 2, 2, 2], seed: 3), layer.weight, layer.bias]) { layer($0[0]) }
  }

  @Test func trainingModeGradientsMatchFiniteDifferences() {
    let layer = BatchNorm2d(features: 3)
    layer.weight.assign(from: randomTensor([3], low: 0.5, high: 1.5, seed: 4))
    checkGradients(of: [randomTensor([2, 3, 2, 2], seed: 5), layer.weight, layer.bias], tolerance: 3e-2) {
      layer($0[0])
    }
  }

  @Test func namesShapesAndSpecification() throws {
    let model = try ModelSpecification(
      parsing:
        "conv2d(1,4,3,bias=false) batchnorm2d(4) relu flatten linear(36,5) batchnorm1d(5,eps=0.001,momentum=none)"
    ).build(seed: 0)
    #expect(
      model.namedParameters.map(\.name) == [
        "0.weight", "1.weight", "1.bias", "4.weight", "4.bias", "5.weight", "5.bias",
      ])
    #expect(model.namedCounters.map(\.name) == ["1.num_batches_tracked", "5.num_batches_tracked"])
    #expect(model.namedBuffers.map(\.name) == ["1.running_mean", "1.running_var", "5.running_mean", "5.running_var"])
    #expect(model.dependsOnBatch)
    #expect(try model.outputShape(forInput: [1, 5, 5]) == [5])
    #expect(throws: ShapeError.self) { try BatchNorm2d(features: 3).outputShape(forInput: [3, 4]) }
    #expect(throws: ShapeError.self) { try BatchNorm1d(features: 3).outputShape(forInput: [4]) }
    #expect(throws: ModelSpecificationError.self) { try ModelSpecification(parsing: "batchnorm2d(0)") }
    #expect(throws: ModelSpecificationError.self) { try ModelSpecification(parsing: "batchnorm1d(3,momentum=2)") }
    #expect(throws: ModelSpecificationError.self) { try ModelSpecification(parsing: "batchnorm1d(3,eps=-1)") }
  }
}

@Suite("Sequence layers")
struct SequenceLayerTests {
  static let spec = "embedding(20,8) positionalembedding(16,8) layernorm(8) gelu linear(8,20)"

  @Test func tokensFlowThroughEmbeddingPositionsNormAndALinearOnTheLastAxis() throws {
    let model = try ModelSpecification(parsing: Self.spec).build(seed: 2)
    #expect(model.namedParameters.map(\.name) == ["0.weight", "1.weight", "2.weight", "2.bias", "4.weight", "4.bias"])
    #expect(model.namedParameters.map(\.tensor.shape) == [[20, 8], [16, 8], [8], [8], [20, 8], [20]])
    #expect(try model.outputShape(forInput: [5]) == [5, 20])
    #expect(throws: ShapeError.self) { try model.outputShape(forInput: [17]) }
    let ids = Tensor([1, 5, 19, 0, 3, 3, 7, 2, 11, 4], shape: [2, 5])
    #expect(model(ids).shape == [2, 5, 20])
    // Every parameter's gradient through the whole stack, by finite differences.
    let parameters = model.parameters
    checkGradients(of: parameters, tolerance: 2e-2) { _ in model(ids) }
  }

  /// The reference's names and layouts (`nn.Sequential` indices, then the block's own),
  /// so that PyTorch's state_dict files load unchanged.
  @Test func aTransformerBlockHasThePyTorchNamesAndShapes() throws {
    let model = try ModelSpecification(
      parsing: "embedding(20,8) positionalembedding(16,8) transformerblock(8,2,ff=12) layernorm(8) linear(8,20)"
    ).build(seed: 1)
    let shapes = Dictionary(uniqueKeysWithValues: model.namedParameters.map { ($0.name, $0.tensor.shape) })
    #expect(shapes["2.ln_1.weight"] == [8] && shapes["2.ln_1.bias"] == [8])
    #expect(shapes["2.attn.in_proj_weight"] == [24, 8] && shapes["2.attn.in_proj_bias"] == [24])
    #expect(shapes["2.attn.out_proj.weight"] == [8, 8] && shapes["2.attn.out_proj.bias"] == [8])
    #expect(shapes["2.ln_2.weight"] == [8] && shapes["2.mlp.0.weight"] == [12, 8] && shapes["2.mlp.0.bias"] == [12])
    #expect(shapes["2.mlp.2.weight"] == [8, 12] && shapes["2.mlp.2.bias"] == [8])
    #expect(model.namedParameters.count == 2 + 12 + 2 + 2)
    #expect(try model.outputShape(forInput: [7]) == [7, 20])
    let ids = Tensor([3, 1, 4, 1, 5, 9, 2, 6, 5, 3], shape: [2, 5])
    #expect(model(ids).shape == [2, 5, 20])
    #expect(throws: ModelSpecificationError.self) { try ModelSpecification(parsing: "transformerblock(8,3)") }
    #expect(throws: ModelSpecificationError.self) { try ModelSpecification(parsing: "transformerblock(8,2,dropout=-0.1)") }
  }

  @Test func aTransformerBlocksGradientsMatchFiniteDifferences() throws {
    let block = try ModelSpecification(parsing: "transformerblock(6,2,ff=8)").build(seed: 3)
    // Random biases and norms, so that every path carries a gradient.
    var generator = RandomGenerator(seed: 5)
    for parameter in block.parameters {
      parameter.mutableBuffer.update(
        fromContentsOf: Tensor(uniformShape: parameter.shape, low: -0.5, high: 0.5, generator: &generator).values)
    }
    let x = randomTensor([2, 4, 6], seed: 6)
    checkGradients(of: block.parameters + [x], step: 1e-2, tolerance: 4e-2) { _ in block(x) }
  }

  @Test func aLinearOnTokensEqualsItOnEachToken() throws {
    var generator = RandomGenerator(seed: 1)
    let linear = Linear(inputSize: 3, outputSize: 2, generator: &generator)
    let x = randomTensor([2, 4, 3], seed: 3)
    let all = linear(x)
    let one = linear(x.reshaped(to: [8, 3]))
    #expect(all.shape == [2, 4, 2] && all.values == one.values)
  }
}
