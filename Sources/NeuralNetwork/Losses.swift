import Tensors

/// How a loss turns per-element losses into its result, as PyTorch's `reduction`.
public enum Reduction: String, Sendable, CaseIterable {
  /// The mean over the counted items (for cross-entropy: the labels that are not ignored).
  case mean
  /// The sum over the items.
  case sum
  /// One loss per item, no reduction.
  case none
}

/// Mean squared error `(predicted − expected)²`, as `nn.MSELoss`.
/// - Precondition: equal element counts; a `[N]` target for `[N, 1]` predictions is
///   compared row by row (not broadcast to `[N, N]`).
public func meanSquaredError(predicted: Tensor, expected: Tensor, reduction: Reduction = .mean) -> Tensor {
  let expected = expected.reshaped(to: predicted.shape)
  switch reduction {
  case .none: return (predicted - expected).raised(to: 2)
  case .sum: return Tensor.squaredErrorSum(predicted, expected)
  case .mean: return Tensor.squaredErrorSum(predicted, expected) / Float(max(predicted.count, 1))
  }
}

/// Cross-entropy of logits `[N, C]` against integer class labels, as `nn.CrossEntropyLoss`.
/// Labels equal to `ignoreIndex` (PyTorch's default −100) contribute nothing, and the mean
/// divides by the number of labels that are not ignored.
public func crossEntropy(
  logits: Tensor, labels: [Int], ignoreIndex: Int = -100, reduction: Reduction = .mean
) -> Tensor {
  crossEntropy(
    logits: logits, labels: Tensor(labels.map(Float.init), shape: [labels.count]), ignoreIndex: ignoreIndex,
    reduction: reduction)
}

/// ``crossEntropy(logits:labels:ignoreIndex:reduction:)`` with the labels held as
/// integral values of a `[N]` tensor, as datasets hold them.
public func crossEntropy(
  logits: Tensor, labels: Tensor, ignoreIndex: Int = -100, reduction: Reduction = .mean
) -> Tensor {
  let picked = logits.logSoftmax(alongAxis: 1).gathering(labels: labels, ignoring: ignoreIndex)
  let losses = -picked
  switch reduction {
  case .none: return losses
  case .sum: return losses.sum()
  case .mean: return losses.sum() / Float(Loss.crossEntropy(ignoreIndex: ignoreIndex).itemCount(targets: labels))
  }
}

/// Next-token cross-entropy of logits `[b, s, V]` against labels `[b, s]`, as causal
/// language modelling computes it (Hugging Face's convention, and the reference's
/// `summed_loss`): position `t`'s logits predict `labels[t + 1]`; the last position predicts
/// nothing, and labels equal to `ignoreIndex` (−100: padding, masked prompts) are not
/// predicted. The mean divides by the predicted tokens.
public func tokenCrossEntropy(
  logits: Tensor, labels: Tensor, ignoreIndex: Int = -100, reduction: Reduction = .mean
) -> Tensor {
  precondition(logits.rank == 3 && labels.shape == Array(logits.shape.prefix(2)), "token cross-entropy needs [b, s, V] and [b, s], got \(logits.shape), \(labels.shape)")
  let (samples, length, vocabulary) = (logits.shape[0], logits.shape[1], logits.shape[2])
  // Labels shifted left by one position, the last position of every sample ignored.
  let shifted = Tensor(uninitializedShape: [samples * length])
  if shifted.hasElements {
    let source = labels.storage.base, target = shifted.storage.base
    for sample in 0..<samples {
      for t in 0..<length {
        target[sample * length + t] = t + 1 < length ? source[sample * length + t + 1] : Float(ignoreIndex)
      }
    }
  }
  return crossEntropy(
    logits: logits.reshaped(to: [samples * length, vocabulary]), labels: shifted, ignoreIndex: ignoreIndex,
    reduction: reduction)
}

/// Binary cross-entropy of logits against targets in `[0, 1]`, as `nn.BCEWithLogitsLoss`,
/// computed stably as `max(x, 0) − x·y + log(1 + e^−|x|)`.
public func binaryCrossEntropy(logits: Tensor, expected: Tensor, reduction: Reduction = .mean) -> Tensor {
  let y = expected.reshaped(to: logits.shape)
  let losses = logits.relu() - logits * y + ((-logits.absoluteValue()).exp() + 1).log()
  return reduce(losses, reduction)
}

private func reduce(_ losses: Tensor, _ reduction: Reduction) -> Tensor {
  switch reduction {
  case .none: losses
  case .sum: losses.sum()
  case .mean: losses.mean()
  }
}

/// A training loss: which function, and its settings, applied to a model's output and a
/// batch's targets.
///
/// Targets are `Float` tensors; for ``crossEntropy`` they hold integer class labels.
public struct Loss: Sendable, Equatable, CustomStringConvertible {
  /// The loss functions.
  public enum Kind: Sendable, Equatable {
    case meanSquaredError
    case crossEntropy(ignoreIndex: Int)
    case binaryCrossEntropy
    /// Next-token cross-entropy over sequences (``tokenCrossEntropy(logits:labels:ignoreIndex:reduction:)``).
    case tokenCrossEntropy(ignoreIndex: Int)
  }

  /// Which function.
  public let kind: Kind

  /// Mean squared error, for regression.
  public static let meanSquaredError = Loss(kind: .meanSquaredError)
  /// Cross-entropy from logits with integer labels, ignoring label −100.
  public static let crossEntropy = Loss(kind: .crossEntropy(ignoreIndex: -100))
  /// Binary cross-entropy from logits.
  public static let binaryCrossEntropy = Loss(kind: .binaryCrossEntropy)
  /// Next-token cross-entropy over sequences, ignoring label −100.
  public static let tokenCrossEntropy = Loss(kind: .tokenCrossEntropy(ignoreIndex: -100))
  /// Cross-entropy ignoring labels equal to `ignoreIndex`.
  public static func crossEntropy(ignoreIndex: Int) -> Loss { Loss(kind: .crossEntropy(ignoreIndex: ignoreIndex)) }

  public var description: String {
    switch kind {
    case .meanSquaredError: "mse"
    case .crossEntropy(let ignoreIndex):
      ignoreIndex == -100 ? "cross-entropy" : "cross-entropy(ignore_index=\(ignoreIndex))"
    case .binaryCrossEntropy: "bce"
    case .tokenCrossEntropy: "token cross-entropy"
    }
  }

  /// The loss of `predicted` against `targets` with the given reduction.
  public func callAsFunction(_ predicted: Tensor, _ targets: Tensor, reduction: Reduction = .mean) -> Tensor {
    switch kind {
    case .meanSquaredError:
      NeuralNetwork.meanSquaredError(predicted: predicted, expected: targets, reduction: reduction)
    case .crossEntropy(let ignoreIndex):
      NeuralNetwork.crossEntropy(logits: predicted, labels: targets, ignoreIndex: ignoreIndex, reduction: reduction)
    case .binaryCrossEntropy:
      NeuralNetwork.binaryCrossEntropy(logits: predicted, expected: targets, reduction: reduction)
    case .tokenCrossEntropy(let ignoreIndex):
      NeuralNetwork.tokenCrossEntropy(logits: predicted, labels: targets, ignoreIndex: ignoreIndex, reduction: reduction)
    }
  }

  /// The number of items a mean reduction divides by for these targets: the labels that
  /// are not ignored for cross-entropy, the target elements otherwise (which match the
  /// predictions one to one).
  public func itemCount(targets: Tensor) -> Int {
    switch kind {
    case .crossEntropy(let ignoreIndex):
      // Shape-only targets (memory tracing) have no values: every label counts.
      targets.hasElements ? targets.buffer.lazy.filter { Int($0) != ignoreIndex }.count : targets.count
    case .tokenCrossEntropy(let ignoreIndex):
      // The predicted tokens: labels[:, 1...] that are not ignored (rule 3 counts these).
      Self.predictedTokens(targets, ignoreIndex: ignoreIndex)
    case .meanSquaredError, .binaryCrossEntropy: targets.count
    }
  }

  static func predictedTokens(_ labels: Tensor, ignoreIndex: Int) -> Int {
    guard labels.rank == 2 else { return 0 }
    let (samples, length) = (labels.shape[0], labels.shape[1])
    guard labels.hasElements else { return samples * max(length - 1, 0) }
    var count = 0
    let values = labels.storage.base
    for sample in 0..<samples {
      for t in 1..<max(length, 1) where Int(values[sample * length + t]) != ignoreIndex { count += 1 }
    }
    return count
  }

  /// The shape of one sample's target for predictions of one sample's shape
  /// `outputShape`: a label (`[]`) for cross-entropy, a scalar for a one-wide output, the
  /// output's shape otherwise.
  public func targetShape(outputShape: [Int]) -> [Int] {
    if case .crossEntropy = kind { return [] }
    // One label per position.
    if case .tokenCrossEntropy = kind { return Array(outputShape.prefix(1)) }
    return outputShape.reduce(1, *) == 1 ? [] : outputShape
  }

  /// Checks that predictions of one sample's shape `outputShape` can be compared with
  /// `targets` (which hold a batch's targets).
  /// - Throws: ``ShapeError/targetMismatch(loss:predicted:targets:)``.
  public func checkTargets(outputShape: [Int], targets: Tensor) throws(ShapeError) {
    let batch = targets.shape.first ?? 0
    let predicted = [batch] + outputShape
    switch kind {
    case .crossEntropy:
      guard outputShape.count == 1, targets.rank == 1 else {
        throw .targetMismatch(loss: description, predicted: predicted, targets: targets.shape)
      }
    case .meanSquaredError, .binaryCrossEntropy:
      guard predicted.reduce(1, *) == targets.count else {
        throw .targetMismatch(loss: description, predicted: predicted, targets: targets.shape)
      }
    case .tokenCrossEntropy:
      guard outputShape.count == 2, targets.rank == 2, targets.shape[1] == outputShape[0] else {
        throw .targetMismatch(loss: description, predicted: predicted, targets: targets.shape)
      }
    }
  }

  /// Checks that every target is one this loss can take with predictions of one sample's
  /// shape `outputShape`: for cross-entropy, class labels in `0..<classes` (or the ignored
  /// label); for binary cross-entropy, values in [0, 1]. The shapes are checked first.
  /// - Throws: ``TargetError`` naming the first bad target.
  public func checkTargetValues(outputShape: [Int], targets: Tensor) throws(TargetError) {
    do {
      try checkTargets(outputShape: outputShape, targets: targets)
    } catch {
      throw .shape(error)
    }
    guard targets.hasElements else { return }
    let values = targets.buffer
    switch kind {
    case .crossEntropy(let ignoreIndex), .tokenCrossEntropy(let ignoreIndex):
      let classes = outputShape.last ?? 0
      if let index = values.firstIndex(where: {
        !($0 >= 0 && $0 < Float(classes) && $0.rounded() == $0) && $0 != Float(ignoreIndex)
      }) {
        throw .labelOutOfRange(sample: index, label: values[index], classes: classes)
      }
    case .binaryCrossEntropy:
      if let index = values.firstIndex(where: { !($0 >= 0 && $0 <= 1) }) {
        throw .probabilityOutOfRange(sample: index, value: values[index])
      }
    case .meanSquaredError:
      if let index = values.firstIndex(where: { !$0.isFinite }) {
        throw .notFinite(sample: index, value: values[index])
      }
    }
  }
}

/// A target that a loss cannot take.
public enum TargetError: Error, Equatable, Sendable, CustomStringConvertible {
  /// The targets' shape does not fit the predictions.
  case shape(ShapeError)
  /// A class label that is not an integer in `0..<classes` (nor the ignored label), for
  /// cross-entropy.
  case labelOutOfRange(sample: Int, label: Float, classes: Int)
  /// A binary cross-entropy target outside [0, 1].
  case probabilityOutOfRange(sample: Int, value: Float)
  /// A regression target that is NaN or infinite.
  case notFinite(sample: Int, value: Float)

  public var description: String {
    switch self {
    case .shape(let error): error.description
    case .labelOutOfRange(let sample, let label, let classes):
      "label \(label.rounded() == label && abs(label) < 1e15 ? String(Int(label)) : String(label)) (sample \(sample)) is not a class of a model with \(classes) outputs (0..<\(classes))"
    case .probabilityOutOfRange(let sample, let value):
      "target \(value) (sample \(sample)) is outside [0, 1], which binary cross-entropy needs"
    case .notFinite(let sample, let value):
      "target \(value) (sample \(sample)) is not a finite number"
    }
  }
}
