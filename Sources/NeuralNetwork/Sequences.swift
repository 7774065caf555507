import Tensors

/// Token embeddings, as PyTorch's `nn.Embedding(vocabularySize, width)`: ids `[b, s]`
/// (integral values) to vectors `[b, s, width]`. `weight` is `[vocabularySize, width]`,
/// initialized N(0, 1) as PyTorch does.
public final class Embedding: Layer, CustomStringConvertible {
  /// `[vocabularySize, width]`.
  public let weight: Tensor

  /// Ids per sample the embedding takes: `0..<vocabularySize`.
  public var vocabularySize: Int { weight.shape[0] }
  /// Features per token.
  public var width: Int { weight.shape[1] }

  /// - Parameters: the vocabulary and the width, each ≥ 1; the weight drawn from `generator`.
  public init(vocabularySize: Int, width: Int, generator: inout RandomGenerator) {
    precondition(vocabularySize >= 1 && width >= 1, "embedding sizes must be positive")
    weight = Tensor(normalShape: [vocabularySize, width], generator: &generator)
    weight.requiresGradient = true
  }

  public func callAsFunction(_ input: Tensor) -> Tensor { Tensor.embedding(ids: input, weight: weight) }

  /// One sample is a sequence of ids `[s]`; its output is `[s, width]`.
  public func outputShape(forInput shape: [Int]) throws(ShapeError) -> [Int] {
    guard shape.count == 1 else { throw .rankMismatch(layer: description, expectedRank: 1, actual: shape) }
    return shape + [width]
  }

  public var namedParameters: [(name: String, tensor: Tensor)] { [("weight", weight)] }

  public var description: String { "embedding(\(vocabularySize),\(width))" }
}

/// Learned absolute positions added to token vectors, as the reference's
/// `PositionalEmbedding(maxLength, width)`: `x[b, t] += weight[t]`. `weight` is
/// `[maxLength, width]`, initialized N(0, 0.02²).
public final class PositionalEmbedding: Layer, CustomStringConvertible {
  /// `[maxLength, width]`.
  public let weight: Tensor

  /// The longest sequence the table covers.
  public var maxLength: Int { weight.shape[0] }
  /// Features per token.
  public var width: Int { weight.shape[1] }

  /// - Parameters: the table's length and width, each ≥ 1; the weight drawn from `generator`.
  public init(maxLength: Int, width: Int, generator: inout RandomGenerator) {
    precondition(maxLength >= 1 && width >= 1, "positional embedding sizes must be positive")
    weight = Tensor(normalShape: [maxLength, width], standardDeviation: 0.02, generator: &generator)
    weight.requiresGradient = true
  }

  public func callAsFunction(_ input: Tensor) -> Tensor { Tensor.addingPositions(input, weight) }

  /// A sample `[s, width]` with `s ≤ maxLength`.
  public func outputShape(forInput shape: [Int]) throws(ShapeError) -> [Int] {
    guard shape.count == 2 else { throw .rankMismatch(layer: description, expectedRank: 2, actual: shape) }
    guard shape[1] == width else { throw .featureMismatch(layer: description, expected: width, actual: shape) }
    guard shape[0] <= maxLength else { throw .sequenceTooLong(layer: description, length: shape[0], maxLength: maxLength) }
    return shape
  }

  public var namedParameters: [(name: String, tensor: Tensor)] { [("weight", weight)] }

  public var description: String { "positionalembedding(\(maxLength),\(width))" }
}
