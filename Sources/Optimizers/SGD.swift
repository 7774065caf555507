import Tensors

/// Stochastic gradient descent with optional momentum, dampening, Nesterov momentum and
/// weight decay, with exactly `torch.optim.SGD`'s update:
///
/// ```
/// g ← g + weightDecay·p
/// b ← g                              (first step)
/// b ← momentum·b + (1 − dampening)·g (later steps)
/// g ← g + momentum·b (Nesterov) or g ← b
/// p ← p − learningRate·g
/// ```
/// (Sutskever et al., "On the importance of initialization and momentum in deep learning", 2013.)
public final class SGD: Optimizer {
  /// The momentum factor; 0 for none.
  public let momentum: Float
  /// Dampening of the momentum's new gradient.
  public let dampening: Float
  /// L2 penalty added to the gradient.
  public let weightDecay: Float
  /// Whether Nesterov momentum is used.
  public let nesterov: Bool

  /// - Parameters:
  ///   - learningRate: ≥ 0.
  ///   - momentum: ≥ 0; 0 (the default) keeps no buffer.
  ///   - dampening: ≥ 0; must be 0 with Nesterov momentum.
  ///   - weightDecay: ≥ 0 (L2 penalty added to the gradient).
  ///   - nesterov: needs `momentum > 0` and `dampening == 0`.
  public init(
    learningRate: Float, momentum: Float = 0, dampening: Float = 0, weightDecay: Float = 0,
    nesterov: Bool = false
  ) throws(OptimizerError) {
    try Self.check(
      learningRate >= 0 && learningRate.isFinite, "SGD", "learning rate", learningRate, "a finite value ≥ 0")
    try Self.check(momentum >= 0 && momentum.isFinite, "SGD", "momentum", momentum, "a finite value ≥ 0")
    try Self.check(dampening >= 0 && dampening.isFinite, "SGD", "dampening", dampening, "a finite value ≥ 0")
    try Self.check(weightDecay >= 0 && weightDecay.isFinite, "SGD", "weight decay", weightDecay, "a finite value ≥ 0")
    if nesterov {
      try Self.check(momentum > 0, "SGD", "momentum", momentum, "> 0 with Nesterov momentum")
      try Self.check(dampening == 0, "SGD", "dampening", dampening, "0 with Nesterov momentum")
    }
    self.momentum = momentum
    self.dampening = dampening
    self.weightDecay = weightDecay
    self.nesterov = nesterov
    super.init(learningRate: learningRate)
  }

  public override var name: String { "sgd" }

  public override func makeStateTensors(elementCount: Int) -> [(name: String, tensor: Tensor)] {
    momentum != 0 ? [("momentum_buffer", Tensor(zeros: [elementCount]))] : []
  }

  public override func updateParameter(
    _ p: UnsafeMutableBufferPointer<Float>, gradient g: UnsafeBufferPointer<Float>,
    state: inout ParameterState, step: Int
  ) {
    let n = p.count
    let lr = learningRate, decay = weightDecay, momentum = momentum
    // Elements are independent: large parameters are shared between two threads.
    if momentum == 0 {
      ParallelWork.split(n) { range in
        for i in range { p[i] -= lr * (g[i] + decay * p[i]) }
      }
      return
    }
    let buffer = state.tensors[0].tensor.mutableBuffer
    // torch.optim.SGD starts the buffer as a copy of the first gradient.
    let isFirst = step == 1
    let keep = 1 - dampening, nesterov = nesterov
    ParallelWork.split(n) { range in
      for i in range {
        let d = decay == 0 ? g[i] : g[i] + decay * p[i]
        let b = isFirst ? d : momentum * buffer[i] + keep * d
        buffer[i] = b
        p[i] -= lr * (nesterov ? d + momentum * b : b)
      }
    }
  }
}
