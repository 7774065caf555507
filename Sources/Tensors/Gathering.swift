extension Tensor {
  /// For a rank-2 tensor `[N, C]`, the elements `self[i, labels[i]]`, a tensor `[N]`.
  /// Rows whose label equals `ignoredLabel` give 0 and receive no gradient.
  /// - Precondition: `labels.count == N`; each label is in `0..<C` or is `ignoredLabel`
  ///   (callers validate user data before calling).
  public func gathering(labels: [Int], ignoring ignoredLabel: Int? = nil) -> Tensor {
    precondition(rank == 2, "gathering(labels:) needs a rank-2 tensor, shape is \(shape)")
    let rows = shape[0], columns = shape[1]
    precondition(labels.count == rows, "\(labels.count) labels for \(rows) rows")
    let result = Tensor(uninitializedShape: [rows])
    let x = storage.base, y = result.storage.base
    for row in 0..<rows {
      let label = labels[row]
      if label == ignoredLabel {
        y[row] = 0
        continue
      }
      precondition(label >= 0 && label < columns, "label \(label) of row \(row) is not in 0..<\(columns)")
      y[row] = x[row * columns + label]
    }
    return Tensor.record(result, inputs: [self]) { g in
      let gradient = Tensor(zeros: [rows, columns])
      let gy = g.storage.base, dx = gradient.storage.base
      for row in 0..<rows where labels[row] != ignoredLabel {
        dx[row * columns + labels[row]] = gy[row]
      }
      return [gradient]
    }
  }
}
