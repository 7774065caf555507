import Tensors

/// A fully connected layer `y = x · Wᵀ + b`, as PyTorch's `nn.Linear`.
///
/// `weight` is `[outputSize, inputSize]` and `bias` is `[outputSize]`, so a PyTorch
/// `state_dict` loads unchanged. Initialization is PyTorch's default: the weight is
/// Kaiming-uniform with `a = √5`, which is uniform in `±1/√inputSize`, and so is the bias.
public final class Linear: Layer, CustomStringConvertible {
  /// `[outputSize, inputSize]`.
  public let weight: Tensor
  /// `[outputSize]`, or `nil` for a layer without bias.
  public let bias: Tensor?

  /// Input features per sample.
  public var inputSize: Int { weight.shape[1] }
  /// Output features per sample.
  public var outputSize: Int { weight.shape[0] }

  /// A layer initialized from `generator`.
  /// - Parameters:
  ///   - inputSize: features per input sample, at least 1.
  ///   - outputSize: features per output sample, at least 1.
  ///   - bias: whether to add a learned bias.
  public init(inputSize: Int, outputSize: Int, bias: Bool = true, generator: inout RandomGenerator) {
    precondition(inputSize > 0 && outputSize > 0, "Linear sizes must be positive, got \(inputSize)→\(outputSize)")
    let bound = 1 / Float(inputSize).squareRoot()
    weight = Tensor(uniformShape: [outputSize, inputSize], low: -bound, high: bound, generator: &generator)
    weight.requiresGradient = true
    if bias {
      let b = Tensor(uniformShape: [outputSize], low: -bound, high: bound, generator: &generator)
      b.requiresGradient = true
      self.bias = b
    } else {
      self.bias = nil
    }
  }

  /// A layer initialized from `seed`, or from the system's entropy when `seed` is `nil`.
  public convenience init(inputSize: Int, outputSize: Int, bias: Bool = true, seed: UInt64? = nil) {
    var generator = RandomGenerator(seed: seed ?? UInt64.random(in: .min ... .max))
    self.init(inputSize: inputSize, outputSize: outputSize, bias: bias, generator: &generator)
  }

  /// Acts on the last axis: `[N, in]`, or `[N, …, in]` (such as tokens `[b, s, in]`) as
  /// one product over all leading positions.
  public func callAsFunction(_ input: Tensor) -> Tensor {
    guard input.rank > 2 else { return Tensor.linear(input, weight: weight, bias: bias) }
    let leading = Array(input.shape.dropLast())
    let rows = input.reshaped(to: [-1, inputSize])
    return Tensor.linear(rows, weight: weight, bias: bias).reshaped(to: leading + [outputSize])
  }

  /// A sample `[in]`, or `[…, in]` with the last axis the features.
  public func outputShape(forInput shape: [Int]) throws(ShapeError) -> [Int] {
    guard let features = shape.last else {
      throw .rankMismatch(layer: "linear(\(inputSize),\(outputSize))", expectedRank: 1, actual: shape)
    }
    guard features == inputSize else {
      throw .featureMismatch(layer: "linear(\(inputSize),\(outputSize))", expected: inputSize, actual: shape)
    }
    return shape.dropLast() + [outputSize]
  }

  public var namedParameters: [(name: String, tensor: Tensor)] {
    [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
  }

  public var description: String { "linear(\(inputSize),\(outputSize)\(bias == nil ? ",bias=false" : ""))" }
}
