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
    Tensor.layerNormalization(input, weight: weight, bias: bias, epsilon: epsilon)
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

/// Batch normalization over the channel axis (axis 1), as PyTorch's `nn.BatchNorm1d` and
/// `nn.BatchNorm2d`, which are its two subclasses.
///
/// In training mode each channel is normalized with the mean and biased variance of its
/// values in the batch, and the running statistics move towards the batch's:
/// `running = (1 − momentum) · running + momentum · batch`, with the *unbiased* variance
/// (`momentum` nil: the cumulative average over `num_batches_tracked` batches). In
/// evaluation mode the running statistics normalize instead. Parameters `weight` (ones) and
/// `bias` (zeros); buffers `running_mean` (zeros), `running_var` (ones) and the counter
/// `num_batches_tracked`.
///
/// Under gradient accumulation a training step sees micro-batches: the statistics come from
/// each micro-batch, and the running statistics are updated once per micro-batch, exactly as
/// a PyTorch loop that accumulates over the same micro-batches.
public class BatchNorm: Layer, CustomStringConvertible {
  /// `[features]`, the per-channel scale.
  public let weight: Tensor
  /// `[features]`, the per-channel shift.
  public let bias: Tensor
  /// `[features]`, the running average of batch means.
  public let runningMean: Tensor
  /// `[features]`, the running average of unbiased batch variances.
  public let runningVariance: Tensor
  /// How many training batches have updated the running statistics.
  public let batchesTracked = Counter()
  /// Added to the variance before the square root.
  public let epsilon: Float
  /// The weight of the newest batch in the running averages; nil for a cumulative average.
  public let momentum: Float?
  /// Whether the layer normalizes with batch statistics (training) or running ones.
  public private(set) var isTraining = true
  /// The ranks of one sample's input the layer accepts (`[C]`, `[C, L]` or `[C, H, W]`).
  let sampleRanks: [Int]
  let name: String

  init(name: String, features: Int, sampleRanks: [Int], epsilon: Float, momentum: Float?) {
    precondition(features >= 1, "\(name) needs at least one feature, got \(features)")
    precondition(epsilon > 0, "\(name) epsilon must be positive, got \(epsilon)")
    precondition(momentum.map { $0 >= 0 && $0 <= 1 } ?? true, "\(name) momentum must be in [0, 1]")
    weight = Tensor(repeating: 1, shape: [features], requiresGradient: true)
    bias = Tensor(zeros: [features], requiresGradient: true)
    runningMean = Tensor(zeros: [features])
    runningVariance = Tensor(repeating: 1, shape: [features])
    self.epsilon = epsilon
    self.momentum = momentum
    self.sampleRanks = sampleRanks
    self.name = name
  }

  /// The number of channels.
  public var features: Int { weight.count }

  public func callAsFunction(_ input: Tensor) -> Tensor {
    guard isTraining else {
      // (x − μ) / √(σ² + ε) · w + b, as x · scale + shift per channel.
      let broadcast = [features] + Array(repeating: 1, count: input.rank - 2)
      let scale = weight / (runningVariance + epsilon).squareRoot()
      let shift = bias - runningMean * scale
      return input * scale.reshaped(to: broadcast) + shift.reshaped(to: broadcast)
    }
    let (output, mean, variance) = Tensor.batchNormalization(input, weight: weight, bias: bias, epsilon: epsilon)
    if output.hasElements { updateRunningStatistics(mean: mean, variance: variance, count: input.count / features) }
    return output
  }

  /// Moves the running statistics towards a batch's, in place (allocates nothing).
  func updateRunningStatistics(mean: Tensor, variance: Tensor, count: Int) {
    batchesTracked.value += 1
    let factor = momentum ?? 1 / Float(batchesTracked.value)
    // One value per channel has no unbiased variance; PyTorch refuses such a batch in
    // training, here the running variance is left as it is.
    let correction = count > 1 ? Float(count) / Float(count - 1) : 0
    let runningM = runningMean.mutableBuffer, runningV = runningVariance.mutableBuffer
    for c in 0..<features {
      runningM[c] = factor * mean.storage.base[c] + (1 - factor) * runningM[c]
      if count > 1 { runningV[c] = factor * variance.storage.base[c] * correction + (1 - factor) * runningV[c] }
    }
  }

  public func outputShape(forInput shape: [Int]) throws(ShapeError) -> [Int] {
    guard sampleRanks.contains(shape.count) else {
      throw .rankMismatch(layer: description, expectedRank: sampleRanks.last!, actual: shape)
    }
    guard shape[0] == features else {
      throw .featureMismatch(layer: description, expected: features, actual: shape)
    }
    return shape
  }

  public var namedParameters: [(name: String, tensor: Tensor)] { [("weight", weight), ("bias", bias)] }
  public var namedBuffers: [(name: String, tensor: Tensor)] {
    [("running_mean", runningMean), ("running_var", runningVariance)]
  }
  public var namedCounters: [(name: String, counter: Counter)] { [("num_batches_tracked", batchesTracked)] }
  public func setTraining(_ training: Bool) { isTraining = training }
  public var dependsOnBatch: Bool { true }

  public var description: String {
    var options = ""
    if epsilon != 1e-5 { options += ",eps=\(epsilon)" }
    if momentum != 0.1 { options += ",momentum=\(momentum.map { "\($0)" } ?? "none")" }
    return "\(name)(\(features)\(options))"
  }
}

/// Batch normalization of `[N, C]` or `[N, C, L]` inputs, as `nn.BatchNorm1d(features)`.
public final class BatchNorm1d: BatchNorm {
  /// - Parameters:
  ///   - features: the channel count C, ≥ 1.
  ///   - epsilon: PyTorch's default is 1e-5.
  ///   - momentum: PyTorch's default is 0.1; nil for a cumulative average.
  public init(features: Int, epsilon: Float = 1e-5, momentum: Float? = 0.1) {
    super.init(name: "batchnorm1d", features: features, sampleRanks: [1, 2], epsilon: epsilon, momentum: momentum)
  }
}

/// Batch normalization of `[N, C, H, W]` inputs, as `nn.BatchNorm2d(features)`.
public final class BatchNorm2d: BatchNorm {
  /// - Parameters: as ``BatchNorm1d``.
  public init(features: Int, epsilon: Float = 1e-5, momentum: Float? = 0.1) {
    super.init(name: "batchnorm2d", features: features, sampleRanks: [3], epsilon: epsilon, momentum: momentum)
  }
}
