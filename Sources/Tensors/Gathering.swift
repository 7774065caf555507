extension Tensor {
  /// For a rank-2 tensor `[N, C]`, the elements `self[i, labels[i]]`, a tensor `[N]`.
  /// Rows whose label equals `ignoredLabel` give 0 and receive no gradient.
  /// - Precondition: `labels.count == N`; each label is in `0..<C` or is `ignoredLabel`
  ///   (callers validate user data before calling).
  public func gathering(labels: [Int], ignoring ignoredLabel: Int? = nil) -> Tensor {
    gathering(labels: Tensor(labels.map(Float.init), shape: [labels.count]), ignoring: ignoredLabel)
  }

  /// ``gathering(labels:ignoring:)`` with the labels held as integral values of a `[N]`
  /// tensor (as datasets hold them), so that no other buffer is made.
  public func gathering(labels: Tensor, ignoring ignoredLabel: Int? = nil) -> Tensor {
    precondition(rank == 2, "gathering(labels:) needs a rank-2 tensor, shape is \(shape)")
    let rows = shape[0], columns = shape[1]
    precondition(labels.count == rows, "\(labels.count) labels for \(rows) rows")
    let result = Tensor(uninitializedShape: [rows])
    let x = storage.base, y = result.storage.base, label = labels.storage.base
    let ignored = ignoredLabel.map(Float.init) ?? .nan
    for row in 0..<(result.hasElements ? rows : 0) {
      if label[row] == ignored {
        y[row] = 0
        continue
      }
      let column = Int(label[row])
      precondition(column >= 0 && column < columns, "label \(label[row]) of row \(row) is not in 0..<\(columns)")
      y[row] = x[row * columns + column]
    }
    let kept = labels.detached()
    return Tensor.record(result, inputs: [self]) { g in
      let gradient = Tensor(uninitializedShape: [rows, columns])
      let gy = g.storage.base, dx = gradient.storage.base, label = kept.storage.base
      // Rows split between two threads (``ParallelWork``), each zeroing its own first.
      ParallelWork.split(rows, elementsPerItem: columns, computes: gradient.hasElements) { range in
        (dx + range.lowerBound * columns).update(repeating: 0, count: range.count * columns)
        for row in range where label[row] != ignored {
          dx[row * columns + Int(label[row])] = gy[row]
        }
      }
      return [gradient]
    }
  }
}
