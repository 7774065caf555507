import Tensors

/// Samples with targets, addressed by index.
public protocol Dataset {
  /// Number of samples.
  var count: Int { get }
  /// The shape of one sample's input (batch axis excluded).
  var sampleShape: [Int] { get }
  /// The samples at `indices`, stacked along a new first axis, with their targets.
  func batch(at indices: [Int]) -> Batch
  /// The targets of the samples at `indices` (without their inputs).
  func targets(at indices: [Int]) -> Tensor
  /// Each sample's length in tokens when samples are sequences of different lengths
  /// (a batch is then padded to its longest sample, and `sampleShape` is the longest);
  /// `nil` when every sample has `sampleShape`.
  var sequenceLengths: [Int]? { get }
}

extension Dataset {
  public func targets(at indices: [Int]) -> Tensor { batch(at: indices).targets }
  public var sequenceLengths: [Int]? { nil }
}

/// Inputs and targets of several samples.
public struct Batch {
  /// `[n] + sampleShape`.
  public let inputs: Tensor
  /// `[n]` (class labels or scalar targets) or `[n, …]`.
  public let targets: Tensor

  /// A batch of `inputs` and `targets` with the same sample count.
  public init(inputs: Tensor, targets: Tensor) {
    precondition(
      inputs.shape.first == targets.shape.first,
      "inputs \(inputs.shape) and targets \(targets.shape) differ in sample count")
    self.inputs = inputs
    self.targets = targets
  }

  /// Number of samples.
  public var count: Int { inputs.shape.first ?? 0 }
}

/// A dataset held in two tensors whose first axes are the samples.
public struct TensorDataset: Dataset {
  /// `[N] + sampleShape`.
  public let inputs: Tensor
  /// `[N]` or `[N, …]`.
  public let targets: Tensor

  /// - Precondition: both tensors have the same extent on their first axis.
  /// A dataset of `inputs` `[N, …]` and `targets` `[N]` or `[N, …]`.
  public init(inputs: Tensor, targets: Tensor) {
    precondition(inputs.rank >= 1 && targets.rank >= 1, "datasets need a sample axis")
    precondition(
      inputs.shape[0] == targets.shape[0],
      "inputs \(inputs.shape) and targets \(targets.shape) differ in sample count")
    self.inputs = inputs
    self.targets = targets
  }

  /// A dataset holding a batch's samples.
  public init(batch: Batch) { self.init(inputs: batch.inputs, targets: batch.targets) }

  public var count: Int { inputs.shape[0] }
  public var sampleShape: [Int] { Array(inputs.shape.dropFirst()) }

  public func batch(at indices: [Int]) -> Batch {
    Batch(inputs: Self.rows(of: inputs, at: indices), targets: Self.rows(of: targets, at: indices))
  }

  public func targets(at indices: [Int]) -> Tensor { Self.rows(of: targets, at: indices) }

  /// The dataset split in two by a seeded shuffle: a `validationFraction` of the samples
  /// (rounded to a whole number, at least one) held out for validation, the rest for
  /// training, each in its original order. The same seed gives the same split.
  /// - Throws: ``DataError/invalidSplit(fraction:samples:)`` unless `0 < validationFraction
  ///   < 1` leaves at least one sample on each side.
  public func splitting(validationFraction: Double, seed: UInt64) throws(DataError) -> (
    training: TensorDataset, validation: TensorDataset
  ) {
    let (training, validation) = try DataLoader.split(
      count: count, validationFraction: validationFraction, seed: seed)
    return (
      TensorDataset(inputs: Self.rows(of: inputs, at: training), targets: Self.rows(of: targets, at: training)),
      TensorDataset(inputs: Self.rows(of: inputs, at: validation), targets: Self.rows(of: targets, at: validation))
    )
  }

  /// A new tensor of the rows (first-axis slices) of `tensor` at `indices`.
  static func rows(of tensor: Tensor, at indices: [Int]) -> Tensor {
    let width = tensor.shape.dropFirst().reduce(1, *)
    let result = Tensor(uninitializedShape: [indices.count] + tensor.shape.dropFirst())
    guard result.hasElements && tensor.hasElements else { return result }
    let source = tensor.storage.base, target = result.storage.base
    // Consecutive indices are copied as one block.
    var position = 0
    while position < indices.count {
      var run = 1
      while position + run < indices.count && indices[position + run] == indices[position] + run { run += 1 }
      precondition(indices[position] >= 0 && indices[position] + run <= tensor.shape[0], "sample index out of range")
      (target + position * width).update(from: source + indices[position] * width, count: run * width)
      position += run
    }
    return result
  }
}
