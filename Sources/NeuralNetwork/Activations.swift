import Tensors

/// `max(0, x)`, as `nn.ReLU`.
public final class ReLU: Layer, CustomStringConvertible {
  public var description: String { "relu" }
  public init() {}
  public func callAsFunction(_ input: Tensor) -> Tensor { input.relu() }
  public func outputShape(forInput shape: [Int]) throws(ShapeError) -> [Int] { shape }
}

/// The hyperbolic tangent, as `nn.Tanh`.
public final class Tanh: Layer, CustomStringConvertible {
  public var description: String { "tanh" }
  public init() {}
  public func callAsFunction(_ input: Tensor) -> Tensor { input.tanh() }
  public func outputShape(forInput shape: [Int]) throws(ShapeError) -> [Int] { shape }
}

/// The logistic sigmoid, as `nn.Sigmoid`.
public final class Sigmoid: Layer, CustomStringConvertible {
  public var description: String { "sigmoid" }
  public init() {}
  public func callAsFunction(_ input: Tensor) -> Tensor { input.sigmoid() }
  public func outputShape(forInput shape: [Int]) throws(ShapeError) -> [Int] { shape }
}

/// The Gaussian error linear unit in its exact erf form, as `nn.GELU()`.
public final class GELU: Layer, CustomStringConvertible {
  public var description: String { "gelu" }
  public init() {}
  public func callAsFunction(_ input: Tensor) -> Tensor { input.gelu() }
  public func outputShape(forInput shape: [Int]) throws(ShapeError) -> [Int] { shape }
}

/// Flattens every axis after the batch axis into one, as `nn.Flatten()`.
public final class Flatten: Layer, CustomStringConvertible {
  public var description: String { "flatten" }
  public init() {}
  public func callAsFunction(_ input: Tensor) -> Tensor {
    input.reshaped(to: [input.shape[0], input.shape.dropFirst().reduce(1, *)])
  }
  public func outputShape(forInput shape: [Int]) throws(ShapeError) -> [Int] { [shape.reduce(1, *)] }
}

/// Zeros each element with probability `probability` during training and scales the rest
/// by `1 / (1 − probability)`, as `nn.Dropout`; the identity in evaluation mode.
public final class Dropout: Layer, CustomStringConvertible {
  /// The probability of zeroing an element, in `[0, 1)`.
  public let probability: Float
  /// Whether the layer drops (training) or passes input through (evaluation).
  public private(set) var isTraining = true
  /// The stream masks are drawn from; saving it makes a run resumable exactly.
  public var generator: RandomGenerator

  /// - Parameters:
  ///   - probability: in `[0, 1)`; PyTorch's default is 0.5.
  ///   - seed: the mask stream's seed.
  public init(probability: Float = 0.5, seed: UInt64 = 0) {
    precondition(probability >= 0 && probability < 1, "dropout probability must be in [0, 1), got \(probability)")
    self.probability = probability
    generator = RandomGenerator(seed: seed)
  }

  public func callAsFunction(_ input: Tensor) -> Tensor {
    guard isTraining, probability > 0 else { return input }
    let mask = Tensor(uninitializedShape: input.shape)
    let scale = 1 / (1 - probability)
    let m = mask.mutableBuffer
    for i in 0..<(mask.hasElements ? m.count : 0) { m[i] = generator.uniform(0, 1) < probability ? 0 : scale }
    return input * mask
  }

  public func outputShape(forInput shape: [Int]) throws(ShapeError) -> [Int] { shape }
  public func setTraining(_ training: Bool) { isTraining = training }
  public var description: String { "dropout(\(probability))" }
  public var randomStates: [UInt64] {
    get { [generator.state] }
    set { if let state = newValue.first { generator.state = state } }
  }
}
