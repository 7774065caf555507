import Tensors

/// Builds the layer list of a ``Sequential`` from statements.
@resultBuilder
public enum LayerBuilder {
  public static func buildExpression(_ layer: any Layer) -> [any Layer] { [layer] }
  public static func buildBlock(_ parts: [any Layer]...) -> [any Layer] { parts.flatMap { $0 } }
  public static func buildOptional(_ part: [any Layer]?) -> [any Layer] { part ?? [] }
  public static func buildEither(first part: [any Layer]) -> [any Layer] { part }
  public static func buildEither(second part: [any Layer]) -> [any Layer] { part }
  public static func buildArray(_ parts: [[any Layer]]) -> [any Layer] { parts.flatMap { $0 } }
}

/// Layers applied one after another, as PyTorch's `nn.Sequential`.
///
/// Parameters are named by position and the inner name, exactly as
/// `nn.Sequential.state_dict()`: `0.weight`, `0.bias`, `2.weight`, …
///
/// ```swift
/// let model = Sequential {
///   Linear(inputSize: 64, outputSize: 128); ReLU(); Linear(inputSize: 128, outputSize: 10)
/// }
/// ```
public final class Sequential: Layer {
  /// The layers, in order.
  public let layers: [any Layer]

  /// A model from a list of layers.
  public init(_ layers: [any Layer]) { self.layers = layers }

  /// A model from statements, one layer each.
  public convenience init(@LayerBuilder _ build: () -> [any Layer]) { self.init(build()) }

  /// Stages (runs of layers, by position) that keep only their input in the forward pass
  /// and run again in backward (``Layer/recomputing(_:through:)``). Set through
  /// ``recomputedSegments``.
  public private(set) var recomputedStages: [Range<Int>] = []
  /// One layer per recomputed stage, made when the stages are set: its parameters, buffers
  /// and random states are the stage's.
  var stageLayers: [Int: (range: Range<Int>, layer: Sequential)] = [:]

  public func callAsFunction(_ input: Tensor) -> Tensor {
    if stageLayers.isEmpty { return run(layers.indices, input) }
    var output = input
    var index = 0
    while index < layers.count {
      if let stage = stageLayers[index] {
        output = stage.layer.recomputing(output) { self.run(stage.range, $0) }
        index = stage.range.upperBound
      } else {
        output = run(index..<(index + 1), output)
        index += 1
      }
    }
    return output
  }

  /// Runs the layers at `positions`; under memory tracing each buffer is tagged with the
  /// layer that made it. A ReLU followed by max pooling runs after it
  /// (``poolsFirst(_:_:)``).
  func run(_ positions: Range<Int>, _ input: Tensor) -> Tensor {
    let trace = ShapeTracing.current
    let outer = trace?.currentLayer
    defer { trace?.currentLayer = outer }
    func apply(_ position: Int, _ input: Tensor) -> Tensor {
      trace?.currentLayer = position
      return layers[position](input)
    }
    var output = input
    var index = positions.lowerBound
    while index < positions.upperBound {
      if index + 1 < positions.upperBound && Self.poolsFirst(layers[index], layers[index + 1]) {
        output = apply(index, apply(index + 1, output))
        index += 2
      } else {
        output = apply(index, output)
        index += 1
      }
    }
    return output
  }

  /// Whether `first` then `second` is a ReLU then max pooling, which run the other way
  /// round: `max(relu(a), relu(b), …) = relu(max(a, b, …))`, since ReLU never reorders
  /// values, and the gradient reaches the same element (the window's first maximum when it
  /// is positive) or none (a window of values ≤ 0 passes no gradient either way). So the
  /// same values and gradients, bit for bit, with the ReLU over a tensor the pooling made
  /// smaller (four times at 2×2), in time and in memory.
  public static func poolsFirst(_ first: any Layer, _ second: any Layer) -> Bool {
    first is ReLU && (second as? Pool2d)?.kind == .maximum
  }

  /// The parts of the model that can recompute their activations in backward, by layer
  /// position: each transformer block (which recomputes itself, see
  /// ``TransformerBlock/recomputes``), and each convolution stage, a `conv2d` with the
  /// batch normalization, activations, pooling and dropout after it.
  public var recomputableSegments: [Range<Int>] {
    var segments: [Range<Int>] = []
    var index = 0
    while index < layers.count {
      if layers[index] is TransformerBlock {
        segments.append(index..<(index + 1))
      } else if layers[index] is Conv2d {
        var end = index + 1
        while end < layers.count, Self.continuesStage(layers[end]) { end += 1 }
        segments.append(index..<end)
        index = end
        continue
      }
      index += 1
    }
    return segments
  }

  /// Whether `layer` belongs to the convolution stage before it.
  static func continuesStage(_ layer: any Layer) -> Bool {
    layer is BatchNorm || layer is Pool2d || layer is ReLU || layer is Tanh || layer is Sigmoid || layer is GELU
      || layer is Dropout || layer is GlobalAveragePool2d || layer is AdaptiveAvgPool2d
  }

  /// The segments (of ``recomputableSegments``) that recompute. Setting it turns the listed
  /// segments to recompute and every other one to keep its activations.
  /// - Precondition: every range set is one of ``recomputableSegments``.
  public var recomputedSegments: [Range<Int>] {
    get {
      recomputableSegments.filter { segment in
        (layers[segment.lowerBound] as? TransformerBlock)?.recomputes ?? recomputedStages.contains(segment)
      }
    }
    set {
      let candidates = recomputableSegments
      precondition(newValue.allSatisfy(candidates.contains), "\(newValue) are not all segments of \(candidates)")
      recomputedStages = []
      stageLayers = [:]
      for segment in candidates {
        let recomputes = newValue.contains(segment)
        if let block = layers[segment.lowerBound] as? TransformerBlock {
          block.recomputes = recomputes
        } else if recomputes {
          recomputedStages.append(segment)
          stageLayers[segment.lowerBound] = (segment, Sequential(Array(layers[segment])))
        }
      }
    }
  }

  /// Whether recomputed transformer blocks run their attention one head at a
  /// time (``TransformerBlock/recomputesLean``): the least memory recomputation needs, for
  /// slower passes. Reads `true` when any block is set so.
  public var leanRecomputation: Bool {
    get { layers.contains { ($0 as? TransformerBlock)?.recomputesLean ?? false } }
    set { for case let block as TransformerBlock in layers { block.recomputesLean = newValue } }
  }

  /// Whether the transformer blocks that do not recompute keep their activations except
  /// the attention weights and GELU outputs (``TransformerBlock/recomputesSelectively``).
  /// Reads `true` when any block is set so.
  public var selectiveRecomputation: Bool {
    get { layers.contains { ($0 as? TransformerBlock)?.recomputesSelectively ?? false } }
    set { for case let block as TransformerBlock in layers { block.recomputesSelectively = newValue } }
  }

  /// Whether the convolutions unfold several samples per product where their planes are
  /// small (``Conv2d/unfoldsSamplesTogether``); `nil` for a model without convolutions.
  /// Setting it sets every convolution.
  public var unfoldsSamplesTogether: Bool? {
    get {
      let convolutions = layers.compactMap { $0 as? Conv2d }
      return convolutions.isEmpty ? nil : convolutions.contains { $0.unfoldsSamplesTogether }
    }
    set { for case let convolution as Conv2d in layers { convolution.unfoldsSamplesTogether = newValue ?? true } }
  }

  /// Whether any convolution would unfold several samples per product for samples of
  /// `shape` (its output plane is small enough, ``Conv2d/samplesPerProduct(plane:)``),
  /// whether or not it is set to; `false` for a shape the model does not take.
  public func convolutionsGroupSamples(forInput shape: [Int]) -> Bool {
    var current = shape
    for layer in layers {
      guard let next = try? layer.outputShape(forInput: current) else { return false }
      if layer is Conv2d && next.count == 3 && Conv2d.samplesPerProduct(plane: next[1] * next[2]) > 1 { return true }
      current = next
    }
    return false
  }

  public func outputShape(forInput shape: [Int]) throws(ShapeError) -> [Int] {
    var current = shape
    for layer in layers { current = try layer.outputShape(forInput: current) }
    return current
  }

  public var namedParameters: [(name: String, tensor: Tensor)] {
    layers.enumerated().flatMap { index, layer in
      layer.namedParameters.map { ("\(index).\($0.name)", $0.tensor) }
    }
  }

  public var namedBuffers: [(name: String, tensor: Tensor)] {
    layers.enumerated().flatMap { index, layer in
      layer.namedBuffers.map { ("\(index).\($0.name)", $0.tensor) }
    }
  }

  public var namedCounters: [(name: String, counter: Counter)] {
    layers.enumerated().flatMap { index, layer in
      layer.namedCounters.map { ("\(index).\($0.name)", $0.counter) }
    }
  }

  public func setTraining(_ training: Bool) {
    for layer in layers { layer.setTraining(training) }
  }

  public var dependsOnBatch: Bool { layers.contains { $0.dependsOnBatch } }

  public var randomStates: [UInt64] {
    get { layers.flatMap(\.randomStates) }
    set {
      var remaining = newValue[...]
      for layer in layers {
        let count = layer.randomStates.count
        layer.randomStates = Array(remaining.prefix(count))
        remaining = remaining.dropFirst(count)
      }
    }
  }
}
