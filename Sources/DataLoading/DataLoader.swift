import Tensors

/// Splits a dataset into batches each epoch: in order, or in a seeded shuffle that depends
/// only on the seed and the epoch (so a resumed run sees the same order).
public struct DataLoader: Sendable {
  /// Samples per batch, ≥ 1.
  public let batchSize: Int
  /// Whether each epoch visits the samples in a new random order.
  public let shuffle: Bool
  /// The shuffle's seed.
  public let seed: UInt64
  /// Whether to drop a last batch smaller than `batchSize`.
  public let dropLast: Bool

  /// - Parameters:
  ///   - batchSize: samples per batch, ≥ 1.
  ///   - shuffle: a new seeded order every epoch.
  ///   - seed: the shuffle's seed.
  ///   - dropLast: drop a last batch smaller than `batchSize`.
  public init(batchSize: Int, shuffle: Bool = false, seed: UInt64 = 0, dropLast: Bool = false) {
    precondition(batchSize >= 1, "batch size must be at least 1, got \(batchSize)")
    self.batchSize = batchSize
    self.shuffle = shuffle
    self.seed = seed
    self.dropLast = dropLast
  }

  /// The order in which epoch `epoch` (0-based) visits `count` samples.
  public func sampleOrder(count: Int, epoch: Int) -> [Int] {
    Self.sampleOrder(count: count, epoch: epoch, shuffle: shuffle, seed: seed)
  }

  /// The order of `count` samples in epoch `epoch`: identity, or a Fisher–Yates shuffle
  /// drawn from a generator seeded by `seed` and `epoch`.
  public static func sampleOrder(count: Int, epoch: Int, shuffle: Bool, seed: UInt64) -> [Int] {
    var order = Array(0..<count)
    guard shuffle, count > 1 else { return order }
    var generator = RandomGenerator(seed: seed ^ (UInt64(epoch + 1) &* 0xD1B5_4A32_D192_ED03))
    for i in stride(from: count - 1, to: 0, by: -1) {
      let j = Int(generator.next() % UInt64(i + 1))
      order.swapAt(i, j)
    }
    return order
  }

  /// The indices of `count` samples split by a seeded draw: a `validationFraction` of them
  /// (rounded, at least one) for validation, the rest for training, each in ascending order.
  /// - Throws: ``DataError/invalidSplit(fraction:samples:)`` unless `0 < validationFraction
  ///   < 1` leaves at least one sample on each side.
  public static func split(count: Int, validationFraction: Double, seed: UInt64) throws(DataError) -> (
    training: [Int], validation: [Int]
  ) {
    guard validationFraction > 0, validationFraction < 1 else {
      throw .invalidSplit(fraction: validationFraction, samples: count)
    }
    let held = Int((validationFraction * Double(count)).rounded())
    guard held >= 1, held < count else { throw .invalidSplit(fraction: validationFraction, samples: count) }
    // Epoch -1 of the loader's shuffle: an order no training epoch uses.
    let order = sampleOrder(count: count, epoch: -1, shuffle: true, seed: seed)
    return (order[held...].sorted(), order[..<held].sorted())
  }

  /// The sample indices of each batch of epoch `epoch`.
  public func batchIndices(count: Int, epoch: Int) -> [[Int]] {
    let order = sampleOrder(count: count, epoch: epoch)
    var batches: [[Int]] = []
    var start = 0
    while start < count {
      let end = Swift.min(start + batchSize, count)
      if end - start < batchSize && dropLast { break }
      batches.append(Array(order[start..<end]))
      start = end
    }
    return batches
  }

  /// The batches of epoch `epoch`.
  public func batches(of dataset: some Dataset, epoch: Int) -> [Batch] {
    batchIndices(count: dataset.count, epoch: epoch).map { dataset.batch(at: $0) }
  }
}
