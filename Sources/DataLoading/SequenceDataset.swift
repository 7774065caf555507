import Tensors

/// Token sequences of different lengths, for next-token training: each sample is its
/// `input_ids` and its `labels` (the same length; −100 marks a position that is not
/// predicted, and by default the labels are the ids).
///
/// A batch is right-padded to its longest sample: ids `[n, s]` padded with 0, labels
/// `[n, s]` padded with −100, so padded positions are never predicted. With causal
/// attention, right padding never changes a real position's output, so the way a window is
/// split into micro-batches never changes the result (see `Loss.tokenCrossEntropy`).
///
/// ```swift
/// let data = try SequenceDataset(samples: [([1, 2, 3], nil), ([4, 5], [-100, 5])])
/// try trainer.fit(data, epochs: 2)
/// ```
public struct SequenceDataset: Dataset, Sendable {
  /// The ignored label: positions with it are not predicted.
  public static let ignoredLabel: Int32 = -100
  /// The largest id a sample may hold: ids travel as `Float`, exact up to 2^24.
  public static let largestID = 1 << 24

  /// Every sample's ids, one after another.
  let ids: [Int32]
  /// Every sample's labels, aligned with `ids`.
  let labels: [Int32]
  /// Sample `i` is `ids[starts[i]..<starts[i + 1]]`.
  let starts: [Int]
  /// The file the samples came from, for messages.
  public let path: String?
  /// The 1-based line each sample starts on in ``path`` (its position + 1 when made in code).
  public let lines: [Int]

  /// A dataset of `samples`, each its ids and optionally its labels (`nil`: the ids).
  /// - Throws: ``DataError/malformedSample(path:line:problem:)`` for an empty sample, a
  ///   labels length that differs from the ids', a negative id, an id over 2^24 or a label
  ///   below −100 or equal to another negative value; `line` is the sample's position + 1.
  public init(samples: [(inputIDs: [Int], labels: [Int]?)]) throws(DataError) {
    var builder = Builder(path: nil)
    for (position, sample) in samples.enumerated() {
      try builder.append(ids: sample.inputIDs, labels: sample.labels, line: position + 1)
    }
    self = try builder.finish(expected: "at least one sample")
  }

  init(ids: [Int32], labels: [Int32], starts: [Int], path: String?, lines: [Int]) {
    self.ids = ids
    self.labels = labels
    self.starts = starts
    self.path = path
    self.lines = lines
  }

  /// Collects samples, checking each.
  struct Builder {
    let path: String?
    var ids: [Int32] = []
    var labels: [Int32] = []
    var starts: [Int] = [0]
    var lines: [Int] = []

    init(path: String?) { self.path = path }

    mutating func append(ids sampleIDs: [Int], labels sampleLabels: [Int]?, line: Int) throws(DataError) {
      func fail(_ problem: String) -> DataError { .malformedSample(path: path ?? "samples", line: line, problem: problem) }
      guard !sampleIDs.isEmpty else { throw fail("input_ids is empty; expected at least one id") }
      if let sampleLabels, sampleLabels.count != sampleIDs.count {
        throw fail(
          "labels has \(sampleLabels.count) values and input_ids \(sampleIDs.count); expected the same length")
      }
      for (position, id) in sampleIDs.enumerated() where id < 0 || id >= SequenceDataset.largestID {
        throw fail("input_ids[\(position)] is \(id); expected an id from 0 to \(SequenceDataset.largestID - 1)")
      }
      for (position, label) in (sampleLabels ?? []).enumerated()
      where label != Int(SequenceDataset.ignoredLabel) && (label < 0 || label >= SequenceDataset.largestID) {
        throw fail(
          "labels[\(position)] is \(label); expected an id from 0 to \(SequenceDataset.largestID - 1), or -100 for a position that is not predicted"
        )
      }
      ids.append(contentsOf: sampleIDs.lazy.map { Int32($0) })
      labels.append(contentsOf: (sampleLabels ?? sampleIDs).lazy.map { Int32($0) })
      starts.append(ids.count)
      lines.append(line)
    }

    func finish(expected: String) throws(DataError) -> SequenceDataset {
      guard !lines.isEmpty else { throw .noSamples(path: path ?? "samples", expected: expected) }
      return SequenceDataset(ids: ids, labels: labels, starts: starts, path: path, lines: lines)
    }
  }

  public var count: Int { lines.count }

  /// `[longest]`: a batch of every sample is padded to the longest one.
  public var sampleShape: [Int] { [lengths.max() ?? 0] }

  /// Every sample's length in tokens.
  public var lengths: [Int] { (0..<count).map(length(of:)) }

  public var sequenceLengths: [Int]? { lengths }

  /// Sample `index`'s length in tokens.
  public func length(of index: Int) -> Int { starts[index + 1] - starts[index] }

  /// Sample `index`'s ids.
  public func inputIDs(of index: Int) -> [Int] { ids[starts[index]..<starts[index + 1]].map(Int.init) }

  /// Sample `index`'s labels (−100 where not predicted).
  public func labels(of index: Int) -> [Int] { labels[starts[index]..<starts[index + 1]].map(Int.init) }

  /// The longest of the samples at `indices`.
  public func paddedLength(of indices: [Int]) -> Int {
    var longest = 0
    for index in indices { longest = Swift.max(longest, length(of: index)) }
    return longest
  }

  /// Ids `[n, s]` (0 after each sample's end) and labels `[n, s]` (−100 after it), `s` the
  /// longest of the samples at `indices`. Nothing but the two tensors is allocated, so
  /// that a measured micro-step holds what the planner predicts.
  public func batch(at indices: [Int]) -> Batch {
    let length = paddedLength(of: indices)
    return Batch(inputs: padded(ids, indices, length, pad: 0), targets: padded(labels, indices, length, pad: -100))
  }

  public func targets(at indices: [Int]) -> Tensor {
    padded(labels, indices, paddedLength(of: indices), pad: -100)
  }

  func padded(_ values: [Int32], _ indices: [Int], _ length: Int, pad: Float) -> Tensor {
    let result = Tensor(uninitializedShape: [indices.count, length])
    guard result.hasElements else { return result }
    let target = result.storage.base
    values.withUnsafeBufferPointer { source in
      for (row, index) in indices.enumerated() {
        precondition(index >= 0 && index < count, "sample index \(index) out of range 0..<\(count)")
        let start = starts[index], sampleLength = starts[index + 1] - start
        let rowStart = target + row * length
        for position in 0..<sampleLength { rowStart[position] = Float(source[start + position]) }
        if sampleLength < length { (rowStart + sampleLength).update(repeating: pad, count: length - sampleLength) }
      }
    }
    return result
  }

  /// Each sample cut to its first `maxLength` tokens (ids and labels).
  public func truncated(to maxLength: Int) -> SequenceDataset {
    precondition(maxLength >= 1, "a maximum length must be at least 1, got \(maxLength)")
    var newIDs: [Int32] = [], newLabels: [Int32] = [], newStarts = [0]
    for index in 0..<count {
      let range = starts[index]..<Swift.min(starts[index + 1], starts[index] + maxLength)
      newIDs.append(contentsOf: ids[range])
      newLabels.append(contentsOf: labels[range])
      newStarts.append(newIDs.count)
    }
    return SequenceDataset(ids: newIDs, labels: newLabels, starts: newStarts, path: path, lines: lines)
  }

  /// The samples at `indices`, in that order.
  public func subset(_ indices: [Int]) -> SequenceDataset {
    var newIDs: [Int32] = [], newLabels: [Int32] = [], newStarts = [0], newLines: [Int] = []
    for index in indices {
      newIDs.append(contentsOf: ids[starts[index]..<starts[index + 1]])
      newLabels.append(contentsOf: labels[starts[index]..<starts[index + 1]])
      newStarts.append(newIDs.count)
      newLines.append(lines[index])
    }
    return SequenceDataset(ids: newIDs, labels: newLabels, starts: newStarts, path: path, lines: newLines)
  }

  /// The dataset split in two by the same seeded draw as `TensorDataset.splitting`.
  /// - Throws: ``DataError/invalidSplit(fraction:samples:)``.
  public func splitting(validationFraction: Double, seed: UInt64) throws(DataError) -> (
    training: SequenceDataset, validation: SequenceDataset
  ) {
    let (training, validation) = try DataLoader.split(count: count, validationFraction: validationFraction, seed: seed)
    return (subset(training), subset(validation))
  }

  /// Fails on the first sample the model cannot take: an id outside a vocabulary of
  /// `vocabularySize`, a label outside `outputWidth` classes (default: the vocabulary), or
  /// more than `maxLength` tokens (a positional table's length).
  /// - Throws: ``DataError/sequenceRejected(path:line:problem:)`` naming the sample's line.
  public func check(vocabularySize: Int?, outputWidth: Int? = nil, maxLength: Int?) throws(DataError) {
    let classes = outputWidth ?? vocabularySize
    for index in 0..<count {
      func fail(_ problem: String) -> DataError {
        .sequenceRejected(path: path ?? "samples", line: lines[index], problem: problem)
      }
      if let maxLength, length(of: index) > maxLength {
        throw fail(
          "the sample has \(length(of: index)) tokens, more than the \(maxLength) positions the model has; expected at most \(maxLength) (truncate longer samples)"
        )
      }
      for position in starts[index]..<starts[index + 1] {
        if let vocabularySize, ids[position] >= vocabularySize {
          throw fail(
            "input_ids[\(position - starts[index])] is \(ids[position]), outside the embedding's vocabulary of \(vocabularySize); expected an id from 0 to \(vocabularySize - 1)"
          )
        }
        if let classes, labels[position] >= classes {
          throw fail(
            "labels[\(position - starts[index])] is \(labels[position]), outside the model's \(classes) outputs; expected an id from 0 to \(classes - 1) or -100"
          )
        }
      }
    }
  }

  /// Positions that are predicted (a label after the first position that is not −100),
  /// over every sample.
  public var predictedTokenCount: Int {
    var total = 0
    for index in 0..<count where starts[index + 1] - starts[index] > 1 {
      for position in (starts[index] + 1)..<starts[index + 1] where labels[position] != Self.ignoredLabel {
        total += 1
      }
    }
    return total
  }
}
