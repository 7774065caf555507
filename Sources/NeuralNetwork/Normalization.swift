import Tensors

/// Layer normalization over the last axis, as `nn.LayerNorm(n)`: each sample's last-axis
/// values are shifted to mean 0 and scaled to variance 1 (biased variance, `ε = 1e-5`),
/// then multiplied by `weight` (ones at start) and shifted by `bias` (zeros).
public final class LayerNorm: Layer, CustomStringConvertible {
  /// `[size]`.
  public let weight: Tensor
  /// `[size]`.
  public let bias: Tensor
  /// Added to the variance before the square root.
  public let epsilon: Float

  /// - Parameters:
  ///   - size: the extent of the normalized (last) axis, ≥ 1.
  ///   - epsilon: PyTorch's default is 1e-5.
  public init(size: Int, epsilon: Float = 1e-5) {
    precondition(size >= 1, "LayerNorm size must be positive, got \(size)")
    weight = Tensor(repeating: 1, shape: [size], requiresGradient: true)
    bias = Tensor(zeros: [size], requiresGradient: true)
    self.epsilon = epsilon
  }

  public func callAsFunction(_ input: Tensor) -> Tensor {
    let centred = input - input.mean(alongAxes: [-1], keepingDimensions: true)
    let variance = centred.raised(to: 2).mean(alongAxes: [-1], keepingDimensions: true)
    return centred / (variance + epsilon).squareRoot() * weight + bias
  }

  public func outputShape(forInput shape: [Int]) throws(ShapeError) -> [Int] {
    guard shape.last == weight.count else {
      throw .featureMismatch(layer: description, expected: weight.count, actual: shape)
    }
    return shape
  }

  public var namedParameters: [(name: String, tensor: Tensor)] { [("weight", weight), ("bias", bias)] }

  public var description: String { "layernorm(\(weight.count))" }
}
