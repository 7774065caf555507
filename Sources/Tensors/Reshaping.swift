extension Tensor {
  /// The same elements under another shape with the same element count (no copy).
  /// One extent may be `-1`, inferred from the others.
  public func reshaped(to newShape: [Int]) -> Tensor {
    reshaped(to: newShape, recording: true)
  }

  func reshaped(to requested: [Int], recording: Bool) -> Tensor {
    var newShape = requested
    if let unknown = newShape.firstIndex(of: -1) {
      let known = newShape.enumerated().filter { $0.offset != unknown }.map(\.element).elementCount
      precondition(known > 0 && count % known == 0, "cannot reshape \(shape) to \(requested)")
      newShape[unknown] = count / known
    }
    precondition(
      newShape.allSatisfy { $0 >= 0 } && newShape.elementCount == count,
      "cannot reshape \(shape) (\(count) elements) to \(requested)")
    let result = Tensor(shape: newShape, storage: storage)
    guard recording else { return result }
    let inputShape = shape
    return Tensor.record(result, inputs: [self]) { g in [g.reshaped(to: inputShape, recording: false)] }
  }

  /// The tensor with axes `first` and `second` swapped (a copy; matrix products take
  /// transposes as flags instead, see ``matmul(_:_:transposingLeft:transposingRight:)``).
  public func transposed(_ first: Int = -2, _ second: Int = -1) -> Tensor {
    let a = normalizedAxis(first), b = normalizedAxis(second)
    let result = swappingAxes(a, b)
    return Tensor.record(result, inputs: [self]) { g in [g.swappingAxes(a, b)] }
  }

  /// A copy with axes `a` and `b` swapped; no graph.
  func swappingAxes(_ a: Int, _ b: Int) -> Tensor {
    var outputShape = shape
    outputShape.swapAt(a, b)
    let result = Tensor(uninitializedShape: outputShape)
    guard count > 0, result.hasElements else { return result }
    // Input strides, permuted into the output's axis order.
    var strides = [Int](repeating: 1, count: rank)
    for axis in stride(from: rank - 2, through: 0, by: -1) { strides[axis] = strides[axis + 1] * shape[axis + 1] }
    strides.swapAt(a, b)
    let x = storage.base, out = result.storage.base
    var index = [Int](repeating: 0, count: rank)
    var offset = 0
    for position in 0..<count {
      out[position] = x[offset]
      var axis = rank - 1
      while axis >= 0 {
        index[axis] += 1
        offset += strides[axis]
        if index[axis] < outputShape[axis] { break }
        offset -= strides[axis] * outputShape[axis]
        index[axis] = 0
        axis -= 1
      }
    }
    return result
  }
}
