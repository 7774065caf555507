import Accumulation
import DataLoading
import Memory
import NeuralNetwork
import Optimizers
import Tensors

/// Runs real training steps (making the batch, forward, backward, optimizer step) on random
/// data and measures their peak with jemalloc, to check predictions against.
public struct MemoryMeasurement {
  public let stepper: WindowStepper
  public let sampleShape: [Int]
  /// Labels below this bound for cross-entropy (the model's output width).
  let classCount: Int
  /// The last axis of the model's output (the vocabulary of a token model).
  let outputWidth: Int

  /// - Parameters: a real model (with elements), its optimizer and loss, one sample's shape.
  public init(model: any Layer, optimizer: Optimizer, loss: Loss, sampleShape: [Int]) throws(PlanningError) {
    do {
      let outputShape = try model.outputShape(forInput: sampleShape)
      classCount = outputShape.reduce(1, *)
      outputWidth = outputShape.last ?? 1
    } catch {
      throw .shape(error)
    }
    stepper = WindowStepper(model: model, optimizer: optimizer, loss: loss)
    self.sampleShape = sampleShape
  }

  /// `samples` random samples with targets the loss accepts.
  public func randomDataset(samples: Int) -> TensorDataset {
    var generator = RandomGenerator(seed: UInt64(samples))
    var inputs = Tensor(uniformShape: [samples] + sampleShape, low: -1, high: 1, generator: &generator)
    let targets: Tensor
    switch stepper.loss.kind {
    case .tokenCrossEntropy:
      // Token ids: 0 is in every vocabulary; labels cycle through the output's.
      inputs = Tensor(zeros: [samples] + sampleShape)
      targets = Tensor(
        (0..<(samples * sampleShape.reduce(1, *))).map { Float($0 % max(outputWidth, 1)) }, shape: [samples] + sampleShape)
    case .crossEntropy:
      targets = Tensor((0..<samples).map { Float($0 % max(classCount, 1)) }, shape: [samples])
    case .binaryCrossEntropy:
      targets = Tensor((0..<samples).map { Float($0 % 2) }, shape: [samples])
    case .meanSquaredError:
      targets = Tensor(
        uniformShape: classCount == 1 ? [samples] : [samples, classCount], low: -1, high: 1, generator: &generator)
    }
    return TensorDataset(inputs: inputs, targets: targets)
  }

  /// The measured peak (persistent bytes plus the jemalloc-measured transient peak) of one
  /// training step with a single micro-batch of `microBatch` random samples, after one
  /// warm-up step.
  public func peakBytes(microBatch: Int) -> Int {
    let dataset = randomDataset(samples: microBatch)
    let window = [Array(0..<microBatch)]
    _ = stepper.step(window: window, of: dataset)
    return stepper.step(window: window, of: dataset).peakBytes
  }
}
