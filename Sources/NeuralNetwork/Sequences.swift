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

/// A pre-LayerNorm causal self-attention block (GPT-2 layout), as the reference's
/// `TransformerBlock(width, heads, ff)`: `x + attn(ln_1(x))`, then `+ mlp(ln_2(·))`, on
/// tokens `[b, s, width]`.
///
/// Parameter names and layouts are PyTorch's: `ln_1.{weight,bias}`,
/// `attn.in_proj_weight` `[3·width, width]` (query, key, value rows in that order),
/// `attn.in_proj_bias` `[3·width]`, `attn.out_proj.{weight,bias}`, `ln_2.{weight,bias}`,
/// `mlp.0.{weight [ff, width], bias}`, `mlp.2.{weight [width, ff], bias}`. Heads split
/// `width` into `heads` slices; scores are scaled by `1/√(width/heads)`; the MLP's GELU is
/// the exact (erf) one. Initialization follows `nn.MultiheadAttention` (Xavier-uniform input
/// projection, zero projection biases) and `nn.Linear`. With dropout `p` (training only), as
/// the reference: on the attention weights, on the attention output and on the MLP output,
/// masks drawn in that order from the block's own generator.
public final class TransformerBlock: Layer, CustomStringConvertible {
  public let firstNorm: LayerNorm
  /// `[3·width, width]`.
  public let inputProjectionWeight: Tensor
  /// `[3·width]`.
  public let inputProjectionBias: Tensor
  public let outputProjection: Linear
  public let secondNorm: LayerNorm
  public let expansion: Linear
  public let contraction: Linear
  /// Attention heads.
  public let heads: Int
  /// The dropout probability, in `[0, 1)` (0: none).
  public let dropout: Float
  /// Whether dropout is applied (training) or not (evaluation).
  public private(set) var isTraining = true
  /// The stream dropout masks are drawn from; saving it makes a run resumable exactly.
  public var generator: RandomGenerator

  /// Features per token.
  public var width: Int { outputProjection.outputSize }
  /// The MLP's hidden width.
  public var feedForward: Int { expansion.outputSize }

  /// - Parameters: the width, the number of heads (dividing the width) and the MLP's width
  ///   (`4·width` in the reference by default); weights drawn from `generator`.
  ///   `dropout` in `[0, 1)` with masks drawn from a generator seeded by `dropoutSeed`.
  public init(
    width: Int, heads: Int, feedForward: Int, dropout: Float = 0, dropoutSeed: UInt64 = 0,
    generator: inout RandomGenerator
  ) {
    precondition(width >= 1 && heads >= 1 && width % heads == 0 && feedForward >= 1, "bad transformer block sizes")
    precondition(dropout >= 0 && dropout < 1, "dropout probability must be in [0, 1), got \(dropout)")
    self.dropout = dropout
    self.generator = RandomGenerator(seed: dropoutSeed)
    firstNorm = LayerNorm(size: width)
    // Xavier-uniform over the whole [3·width, width] matrix, as nn.MultiheadAttention.
    let bound = (6 / Float(4 * width)).squareRoot()
    inputProjectionWeight = Tensor(
      uniformShape: [3 * width, width], low: -bound, high: bound, generator: &generator)
    inputProjectionWeight.requiresGradient = true
    inputProjectionBias = Tensor(zeros: [3 * width], requiresGradient: true)
    outputProjection = Linear(inputSize: width, outputSize: width, generator: &generator)
    if let bias = outputProjection.bias, bias.hasElements { bias.mutableBuffer.update(repeating: 0) }
    secondNorm = LayerNorm(size: width)
    expansion = Linear(inputSize: width, outputSize: feedForward, generator: &generator)
    contraction = Linear(inputSize: feedForward, outputSize: width, generator: &generator)
    self.heads = heads
  }

  /// Whether the block keeps only its input for backward and recomputes the rest there
  /// (``Layer/recomputing(_:through:)``), as two segments: the attention half (its output,
  /// the residual sum, is the one more tensor kept) and the MLP half. Inside them the
  /// softmax weights are not kept either but computed again per head
  /// (`Tensor.causalSelfAttention(_:heads:dropoutMask:keepsWeights:)`), nor the GELU's
  /// output (`Tensor.linearOfGELU(_:weight:bias:)`). Less memory for one more forward of
  /// the block, one more `Q·Kᵀ` per head and one more GELU; the same results bit for bit.
  public var recomputes = false

  /// With ``recomputes``, whether the attention's backward runs its heads one at a time on
  /// the calling thread (`oneHeadAtATime` of
  /// `Tensor.causalSelfAttention(_:heads:dropoutMask:keepsWeights:oneHeadAtATime:)`) rather
  /// than sharing them between two threads: two `[s, s]` fewer at its peak, for a slower
  /// pass. The planner sets it where only this holds the budget. The same results bit for
  /// bit either way.
  public var recomputesLean = false

  /// Without ``recomputes``, whether the block keeps its activations except the two that
  /// are cheap to compute again and large: the attention weights (`[s, s]` per head,
  /// computed again per head from the kept queries and keys) and the GELU's output
  /// (computed again from its kept input). Selective recomputation, as Megatron-LM's: far
  /// less than a whole forward of the block for, at 256 tokens, about 40% of its
  /// activation memory. The same results bit for bit.
  public var recomputesSelectively = false

  public func callAsFunction(_ input: Tensor) -> Tensor {
    guard recomputes else {
      let keeps = !recomputesSelectively
      return feedForwardHalf(attentionHalf(input, keepsWeights: keeps), keepsActivation: keeps)
    }
    let x = recomputing(input) { self.attentionHalf($0, keepsWeights: false, oneHeadAtATime: self.recomputesLean) }
    return recomputing(x) { self.feedForwardHalf($0, keepsActivation: false) }
  }

  /// `input + attention(ln_1(input))`, dropout included.
  func attentionHalf(_ input: Tensor, keepsWeights: Bool = true, oneHeadAtATime: Bool = false) -> Tensor {
    let (samples, length) = (input.shape[0], input.shape[1])
    let normalized = firstNorm(input).reshaped(to: [samples * length, width])
    let projected = Tensor.linear(normalized, weight: inputProjectionWeight, bias: inputProjectionBias)
    let drops = isTraining && dropout > 0
    let attended = Tensor.causalSelfAttention(
      projected.reshaped(to: [samples, length, 3 * width]), heads: heads,
      dropoutMask: drops ? dropoutMask([samples, heads, length, length]) : nil, keepsWeights: keepsWeights,
      oneHeadAtATime: oneHeadAtATime)
    var attention = outputProjection(attended)
    if drops { attention = attention * dropoutMask(attention.shape) }
    return input + attention
  }

  /// `x + mlp(ln_2(x))`, dropout included. `keepsActivation: false` keeps the GELU's input
  /// only, not also its output (`Tensor.linearOfGELU`).
  func feedForwardHalf(_ x: Tensor, keepsActivation: Bool = true) -> Tensor {
    let expanded = expansion(secondNorm(x))
    var mlp: Tensor
    if keepsActivation {
      mlp = contraction(expanded.gelu())
    } else {
      let rows = expanded.reshaped(to: [-1, feedForward])
      mlp = Tensor.linearOfGELU(rows, weight: contraction.weight, bias: contraction.bias)
        .reshaped(to: expanded.shape.dropLast() + [width])
    }
    if isTraining && dropout > 0 { mlp = mlp * dropoutMask(mlp.shape) }
    return x + mlp
  }

  /// A mask of `shape`: 0 with probability ``dropout``, else `1/(1−dropout)` (drawn only
  /// when the tensor has elements, so tracing a step draws nothing).
  func dropoutMask(_ shape: [Int]) -> Tensor {
    let mask = Tensor(uninitializedShape: shape)
    guard mask.hasElements else { return mask }
    let scale = 1 / (1 - dropout), values = mask.mutableBuffer
    for index in 0..<values.count { values[index] = generator.uniform(0, 1) < dropout ? 0 : scale }
    return mask
  }

  public func setTraining(_ training: Bool) { isTraining = training }

  public var randomStates: [UInt64] {
    get { dropout > 0 ? [generator.state] : [] }
    set { if dropout > 0, let state = newValue.first { generator.state = state } }
  }

  /// A sample `[s, width]`.
  public func outputShape(forInput shape: [Int]) throws(ShapeError) -> [Int] {
    guard shape.count == 2 else { throw .rankMismatch(layer: description, expectedRank: 2, actual: shape) }
    guard shape[1] == width else { throw .featureMismatch(layer: description, expected: width, actual: shape) }
    return shape
  }

  public var namedParameters: [(name: String, tensor: Tensor)] {
    [
      ("ln_1.weight", firstNorm.weight), ("ln_1.bias", firstNorm.bias),
      ("attn.in_proj_weight", inputProjectionWeight), ("attn.in_proj_bias", inputProjectionBias),
      ("attn.out_proj.weight", outputProjection.weight), ("attn.out_proj.bias", outputProjection.bias!),
      ("ln_2.weight", secondNorm.weight), ("ln_2.bias", secondNorm.bias),
      ("mlp.0.weight", expansion.weight), ("mlp.0.bias", expansion.bias!),
      ("mlp.2.weight", contraction.weight), ("mlp.2.bias", contraction.bias!),
    ]
  }

  public var description: String {
    "transformerblock(\(width),\(heads)\(feedForward == 4 * width ? "" : ",ff=\(feedForward)")\(dropout > 0 ? ",dropout=\(dropout)" : ""))"
  }
}
