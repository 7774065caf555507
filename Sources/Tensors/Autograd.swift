/// One recorded operation: its inputs and how to turn the gradient of its output into
/// gradients of its inputs.
final class GradientNode {
  let inputs: [Tensor]
  /// Given the output's gradient, the gradient for each input (`nil` where an input needs none).
  let backward: (Tensor) -> [Tensor?]

  init(inputs: [Tensor], backward: @escaping (Tensor) -> [Tensor?]) {
    self.inputs = inputs
    self.backward = backward
  }
}

extension Tensor {
  /// Whether gradients flow into this tensor: it is a leaf that requires them, or the
  /// result of an operation on such tensors.
  public var isDifferentiable: Bool { requiresGradient || node != nil }

  /// Makes `result` remember that it came from `inputs` when any of them is differentiable.
  /// Returns `result`.
  @discardableResult
  static func record(
    _ result: Tensor, inputs: [Tensor], backward: @escaping (Tensor) -> [Tensor?]
  ) -> Tensor {
    if inputs.contains(where: { $0.isDifferentiable }) && !GradientRecording.isPaused {
      result.node = GradientNode(inputs: inputs, backward: backward)
    }
    return result
  }

  /// Records `output` as computed from `input` and `parameters` by a segment that kept
  /// nothing else for backward: its `backward` (given the output's gradient) recomputes the
  /// segment, accumulates the parameters' gradients itself and returns the input's
  /// gradient (see `Layer.recomputing(_:)`).
  public static func recordRecomputation(
    _ output: Tensor, input: Tensor, parameters: [Tensor], backward: @escaping (Tensor) -> Tensor?
  ) -> Tensor {
    record(output, inputs: [input] + parameters) { gradient in
      [backward(gradient)] + Array(repeating: nil, count: parameters.count)
    }
  }

  /// Back-propagates from this scalar: adds d(self)/d(leaf) into the ``gradient`` of every
  /// leaf that requires gradients, then releases the graph (intermediate results become
  /// constants, as after PyTorch's `backward()`).
  /// - Precondition: the tensor has one element.
  public func backward() {
    precondition(count == 1, "backward() starts from a one-element tensor, shape is \(shape)")
    backward(seed: Tensor(repeating: 1, shape: shape))
  }

  /// Back-propagates with an explicit gradient of the output (`seed`, same shape).
  public func backward(seed: Tensor) {
    precondition(seed.shape == shape, "seed shape \(seed.shape) must equal \(shape)")
    // Topological order: every tensor after all tensors computed from it.
    var order: [Tensor] = []
    var visited = Set<ObjectIdentifier>()
    var stack: [(Tensor, Bool)] = [(self, false)]
    while let (tensor, expanded) = stack.popLast() {
      if expanded {
        order.append(tensor)
        continue
      }
      guard visited.insert(ObjectIdentifier(tensor)).inserted else { continue }
      stack.append((tensor, true))
      for input in tensor.node?.inputs ?? [] where input.isDifferentiable {
        if !visited.contains(ObjectIdentifier(input)) { stack.append((input, false)) }
      }
    }
    var pending: [ObjectIdentifier: Tensor] = [ObjectIdentifier(self): seed]
    for tensor in order.reversed() {
      guard let outputGradient = pending.removeValue(forKey: ObjectIdentifier(tensor)) else {
        continue
      }
      if let node = tensor.node {
        let inputGradients = node.backward(outputGradient)
        for (input, gradient) in zip(node.inputs, inputGradients) {
          guard let gradient, input.isDifferentiable else { continue }
          let key = ObjectIdentifier(input)
          if let existing = pending[key] {
            pending[key] = existing.adding(gradient)
          } else {
            pending[key] = gradient
          }
        }
        tensor.node = nil
      } else if tensor.requiresGradient {
        tensor.accumulateGradient(outputGradient)
      }
    }
  }

  /// Adds `gradient` into this leaf's ``gradient``, in place when one exists.
  func accumulateGradient(_ incoming: Tensor) {
    // Under shape tracing the leaf is left alone: a training step accumulates into a
    // gradient buffer that already exists, which allocates nothing.
    guard incoming.hasElements else { return }
    // The incoming tensor may be shared with other gradients of this pass, so a new
    // gradient is always a copy: later accumulation writes into it in place.
    if let (target, accumulate) = gradientForWriting() {
      guard target.hasElements else { return }
      let out = target.storage.base
      let source = incoming.storage.base
      if accumulate {
        for index in 0..<count { out[index] += source[index] }
      } else {
        out.update(from: source, count: count)
      }
    } else {
      gradient = incoming.copy()
    }
  }

  /// Elementwise sum of two same-shaped constants, outside any graph.
  func adding(_ other: Tensor) -> Tensor {
    let result = Tensor(uninitializedShape: shape)
    guard result.hasElements else { return result }
    let a = storage.base, b = other.storage.base, out = result.storage.base
    for index in 0..<count { out[index] = a[index] + b[index] }
    return result
  }
}

/// Turns graph recording off for a piece of code, as PyTorch's `torch.no_grad()`:
/// operations inside make plain tensors, so evaluation keeps no graph and no activations.
public enum GradientRecording {
  @TaskLocal static var paused = false

  /// Whether recording is off for the calling code.
  public static var isPaused: Bool { paused }

  /// Runs `body` without recording operations for backward.
  public static func withoutRecording<Result>(_ body: () throws -> Result) rethrows -> Result {
    try $paused.withValue(true, operation: body)
  }
}
