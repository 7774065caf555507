import DataLoading
import Foundation
import NeuralNetwork
import Tensors

/// A model's loss and accuracy on a dataset, in evaluation mode.
public struct Evaluation: Sendable, Equatable, Codable {
  /// The loss per item (the loss's own mean: per sample, per element or per label).
  public var loss: Float
  /// For cross-entropy, the share of samples whose largest score is their label; else nil.
  public var accuracy: Float?
  /// How many samples were evaluated.
  public var sampleCount: Int
  /// For token cross-entropy: the predicted tokens the loss is the mean over; else nil.
  public var tokenCount: Int?
  /// For token cross-entropy: `exp(loss)`, the perplexity per predicted token; else nil.
  public var perplexity: Float?
}

extension Layer {
  /// Evaluates the model on `dataset`: evaluation mode (dropout off, batch normalization
  /// on running statistics), batches of `batchSize` samples, no autograd graph, so the
  /// memory is one batch's forward pass. The model is back in training mode afterwards.
  /// - Precondition: `batchSize ≥ 1` and the dataset's samples fit the model.
  public func evaluate(_ dataset: some Dataset, loss: Loss, batchSize: Int) -> Evaluation {
    precondition(batchSize >= 1, "evaluation batch size must be positive, got \(batchSize)")
    setTraining(false)
    defer { setTraining(true) }
    return GradientRecording.withoutRecording {
      var total: Double = 0, items = 0, correct = 0
      var start = 0
      while start < dataset.count {
        let end = min(start + batchSize, dataset.count)
        let batch = dataset.batch(at: Array(start..<end))
        let output = self(batch.inputs)
        total += Double(loss(output, batch.targets, reduction: .sum).scalarValue)
        items += loss.itemCount(targets: batch.targets)
        if case .crossEntropy = loss.kind { correct += Self.correctCount(scores: output, labels: batch.targets) }
        start = end
      }
      let accuracy: Float? =
        if case .crossEntropy = loss.kind { Float(correct) / Float(max(dataset.count, 1)) } else { nil }
      let mean = Float(total / Double(max(items, 1)))
      var evaluation = Evaluation(loss: mean, accuracy: accuracy, sampleCount: dataset.count)
      if case .tokenCrossEntropy = loss.kind {
        evaluation.tokenCount = items
        evaluation.perplexity = Float(exp(Double(mean)))
      }
      return evaluation
    }
  }

  /// How many rows of `scores` `[N, classes]` have their largest score at their label (the
  /// first of equal maxima, as `argmax`).
  static func correctCount(scores: Tensor, labels: Tensor) -> Int {
    let classes = scores.shape[1]
    let values = scores.buffer, targets = labels.buffer
    var correct = 0
    for row in 0..<scores.shape[0] {
      var best = 0
      for c in 1..<classes where values[row * classes + c] > values[row * classes + best] { best = c }
      if best == Int(targets[row]) { correct += 1 }
    }
    return correct
  }
}
