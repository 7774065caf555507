/// One recorded operation: where its inputs' gradients go and how to turn the gradient of
/// its output into them.
///
/// A node refers to the nodes that made its inputs and to the leaves among them, not to the
/// input tensors: an intermediate result is kept only by whoever holds it (a backward
/// closure that saved it, the caller), as in PyTorch's graph, so a result that backward does
/// not need is freed as soon as the forward pass is done with it.
final class GradientNode {
  /// Where one input's gradient goes.
  enum Edge {
    /// Into the gradient of a leaf that requires gradients.
    case leaf(Tensor)
    /// Into the node that computed the input.
    case node(GradientNode)
    /// Nowhere: the input is a constant.
    case constant
  }

  /// One edge per input, in the order of the inputs.
  private(set) var edges: [Edge]
  /// Given the output's gradient, the gradient for each input (`nil` where an input needs
  /// none); `nil` once backward has run through the node.
  private(set) var backward: ((Tensor) -> [Tensor?])?

  init(inputs: [Tensor], backward: @escaping (Tensor) -> [Tensor?]) {
    edges = inputs.map { input in
      if let node = input.node { return .node(node) }
      return input.requiresGradient ? .leaf(input) : .constant
    }
    self.backward = backward
  }

  /// Whether backward has yet to run through the node.
  var isLive: Bool { backward != nil }

  /// Lets go of the closure (and what it saved) and the edges.
  func release() {
    backward = nil
    edges = []
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
  ///
  /// Each node runs once all the nodes computed from it have passed it their gradients;
  /// a leaf's gradient is added as each contribution arrives. A node is released right
  /// after it runs, so what only it kept is freed as backward goes, not at the end.
  public func backward(seed: Tensor) {
    precondition(seed.shape == shape, "seed shape \(seed.shape) must equal \(shape)")
    guard let root = node else {
      if requiresGradient { accumulateGradient(seed) }
      return
    }
    // Topological order: every node after all nodes computed from it.
    var order: [GradientNode] = []
    var visited = Set<ObjectIdentifier>()
    var stack: [(GradientNode, Bool)] = [(root, false)]
    while let (node, expanded) = stack.popLast() {
      if expanded {
        order.append(node)
        continue
      }
      guard visited.insert(ObjectIdentifier(node)).inserted else { continue }
      stack.append((node, true))
      for case .node(let input) in node.edges where input.isLive && !visited.contains(ObjectIdentifier(input)) {
        stack.append((input, false))
      }
    }
    var pending: [ObjectIdentifier: Tensor] = [ObjectIdentifier(root): seed]
    while let node = order.popLast() {
      defer { node.release() }
      guard let outputGradient = pending.removeValue(forKey: ObjectIdentifier(node)), let backward = node.backward
      else { continue }
      for (edge, gradient) in zip(node.edges, backward(outputGradient)) {
        guard let gradient else { continue }
        switch edge {
        case .leaf(let leaf):
          leaf.accumulateGradient(gradient)
        case .node(let input) where input.isLive:
          let key = ObjectIdentifier(input)
          pending[key] = pending[key].map { $0.adding(gradient) } ?? gradient
        case .node, .constant:
          continue
        }
      }
    }
  }

  /// A view of this tensor's values, outside any graph, that hands the gradient reaching it
  /// in a backward pass to `receive` (and passes nothing on): where a recomputed segment
  /// starts, so that its input's gradient needs no buffer of its own.
  public func capturingGradient(_ receive: @escaping (Tensor) -> Void) -> Tensor {
    let view = detached()
    view.node = GradientNode(inputs: []) { gradient in
      receive(gradient)
      return []
    }
    return view
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
    Tensor.zipped(self, other) { a, b, out, n in for index in 0..<n { out[index] = a[index] + b[index] } }
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
