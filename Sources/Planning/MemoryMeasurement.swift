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

  /// - Parameters: a real model (with elements), its optimizer and loss, one sample's shape.
  public init(model: any Layer, optimizer: Optimizer, loss: Loss, sampleShape: [Int]) throws(PlanningError) {
    do {
      classCount = try model.outputShape(forInput: sampleShape).reduce(1, *)
    } catch {
      throw .shape(error)
    }
    stepper = WindowStepper(model: model, optimizer: optimizer, loss: loss)
    self.sampleShape = sampleShape
  }

  /// The measured peak (persistent bytes plus the jemalloc-measured transient peak) of one
  /// training step with a single micro-batch of `microBatch` random samples, after one
  /// warm-up step.
  public func peakBytes(microBatch: Int) -> Int {
    var generator = RandomGenerator(seed: UInt64(microBatch))
    let inputs = Tensor(uniformShape: [microBatch] + sampleShape, low: -1, high: 1, generator: &generator)
    let targets: Tensor
    switch stepper.loss.kind {
    case .crossEntropy:
      targets = Tensor((0..<microBatch).map { Float($0 % max(classCount, 1)) }, shape: [microBatch])
    case .binaryCrossEntropy:
      targets = Tensor((0..<microBatch).map { Float($0 % 2) }, shape: [microBatch])
    case .meanSquaredError:
      targets = Tensor(
        uniformShape: classCount == 1 ? [microBatch] : [microBatch, classCount], low: -1, high: 1, generator: &generator
      )
    }
    let dataset = TensorDataset(inputs: inputs, targets: targets)
    let window = [Array(0..<microBatch)]
    _ = stepper.step(window: window, of: dataset)
    return stepper.step(window: window, of: dataset).peakBytes
  }
}
