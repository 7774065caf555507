import Tensors

#if canImport(Glibc)
  import Glibc
#endif

/// Adam, with exactly `torch.optim.Adam`'s update (Kingma & Ba, "Adam: A Method for
/// Stochastic Optimization", 2015; AMSGrad from Reddi et al., "On the Convergence of Adam
/// and Beyond", 2018):
///
/// ```
/// g ← g + weightDecay·p                        (Adam's L2 penalty; AdamW decays p instead)
/// m ← β1·m + (1 − β1)·g
/// v ← β2·v + (1 − β2)·g²
/// v̂ ← max(v̂, v)                                (AMSGrad)
/// p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
/// ```
public class Adam: Optimizer {
  /// Decay of the first-moment estimate.
  public let beta1: Float
  /// Decay of the second-moment estimate.
  public let beta2: Float
  /// Added to the denominator for stability.
  public let epsilon: Float
  /// L2 penalty (Adam) or decoupled decay (AdamW).
  public let weightDecay: Float
  /// Whether the running maximum of the second moment is used.
  public let amsgrad: Bool

  /// - Parameters:
  ///   - learningRate: ≥ 0; PyTorch's default is 1e-3.
  ///   - beta1, beta2: in `[0, 1)`; defaults 0.9 and 0.999.
  ///   - epsilon: ≥ 0; default 1e-8.
  ///   - weightDecay: ≥ 0; default 0.
  ///   - amsgrad: keep the running maximum of `v`.
  public init(
    learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8,
    weightDecay: Float = 0, amsgrad: Bool = false
  ) throws(OptimizerError) {
    try Self.validate(
      "Adam", learningRate: learningRate, beta1: beta1, beta2: beta2, epsilon: epsilon, weightDecay: weightDecay)
    self.beta1 = beta1
    self.beta2 = beta2
    self.epsilon = epsilon
    self.weightDecay = weightDecay
    self.amsgrad = amsgrad
    super.init(learningRate: learningRate)
  }

  static func validate(
    _ optimizer: String, learningRate: Float, beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float
  ) throws(OptimizerError) {
    try check(
      learningRate >= 0 && learningRate.isFinite, optimizer, "learning rate", learningRate, "a finite value ≥ 0")
    try check(beta1 >= 0 && beta1 < 1, optimizer, "beta1", beta1, "a value in [0, 1)")
    try check(beta2 >= 0 && beta2 < 1, optimizer, "beta2", beta2, "a value in [0, 1)")
    try check(epsilon >= 0 && epsilon.isFinite, optimizer, "epsilon", epsilon, "a finite value ≥ 0")
    try check(weightDecay >= 0 && weightDecay.isFinite, optimizer, "weight decay", weightDecay, "a finite value ≥ 0")
  }

  public override var name: String { "adam" }

  public override func makeStateTensors(elementCount: Int) -> [(name: String, tensor: Tensor)] {
    let names = amsgrad ? ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"] : ["exp_avg", "exp_avg_sq"]
    return names.map { ($0, Tensor(zeros: [elementCount])) }
  }

  /// Whether weight decay is decoupled (AdamW) rather than added to the gradient.
  var decouplesWeightDecay: Bool { false }

  public override func updateParameter(
    _ p: UnsafeMutableBufferPointer<Float>, gradient g: UnsafeBufferPointer<Float>,
    state: inout ParameterState, step: Int
  ) {
    let m = state.tensors[0].tensor.mutableBuffer
    let v = state.tensors[1].tensor.mutableBuffer
    let maximum = amsgrad ? state.tensors[2].tensor.mutableBuffer : nil
    // Elements are independent: large parameters are shared between two threads, each
    // element computed the same way whichever thread runs it.
    ParallelWork.split(p.count) { range in
      update(
        UnsafeMutableBufferPointer(rebasing: p[range]), UnsafeBufferPointer(rebasing: g[range]),
        UnsafeMutableBufferPointer(rebasing: m[range]), UnsafeMutableBufferPointer(rebasing: v[range]),
        maximum.map { UnsafeMutableBufferPointer(rebasing: $0[range]) }, step: step)
    }
  }

  /// The update of one run of elements: parameters `p`, gradients `g`, moments `m` and `v`,
  /// and AMSGrad's `maximum`.
  func update(
    _ p: UnsafeMutableBufferPointer<Float>, _ g: UnsafeBufferPointer<Float>, _ m: UnsafeMutableBufferPointer<Float>,
    _ v: UnsafeMutableBufferPointer<Float>, _ maximum: UnsafeMutableBufferPointer<Float>?, step: Int
  ) {
    let n = p.count
    if decouplesWeightDecay && weightDecay != 0 {
      let factor = 1 - learningRate * weightDecay
      for i in 0..<n { p[i] *= factor }
    }
    let l2 = decouplesWeightDecay ? 0 : weightDecay
    // Scalars in double precision, as Python computes them, then rounded once.
    let biasCorrection1 = 1 - pow(Double(beta1), Double(step))
    let biasCorrection2 = 1 - pow(Double(beta2), Double(step))
    let stepSize = Float(Double(learningRate) / biasCorrection1)
    let correction2SquareRoot = Float(biasCorrection2.squareRoot())
    let b1 = beta1, b2 = beta2, eps = epsilon
    let oneMinusB1 = 1 - b1, oneMinusB2 = 1 - b2
    var start = 0
    if maximum == nil {
      // Sixteen lanes at a time, with the same operations in the same order as the scalar
      // loop below (so the same results); the scalar form does not vectorize.
      typealias Lanes = SIMD16<Float>
      func load(_ pointer: UnsafePointer<Float>) -> Lanes { UnsafeRawPointer(pointer).loadUnaligned(as: Lanes.self) }
      func store(_ value: Lanes, _ pointer: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: Lanes.self)
      }
      let pp = p.baseAddress!, gp = g.baseAddress!, mp = m.baseAddress!, vp = v.baseAddress!
      while start + 16 <= n {
        let parameter = load(pp + start)
        let gi = l2 == 0 ? load(gp + start) : load(gp + start) + l2 * parameter
        var first = load(mp + start)
        first += oneMinusB1 * (gi - first)
        let second = load(vp + start) * b2 + oneMinusB2 * gi * gi
        store(first, mp + start)
        store(second, vp + start)
        let denominator = second.squareRoot() / correction2SquareRoot + eps
        store(parameter - stepSize * (first / denominator), pp + start)
        start += 16
      }
    }
    for i in start..<n {
      let gi = l2 == 0 ? g[i] : g[i] + l2 * p[i]
      m[i] += oneMinusB1 * (gi - m[i])
      v[i] = v[i] * b2 + oneMinusB2 * gi * gi
      var second = v[i]
      if let maximum {
        maximum[i] = Swift.max(maximum[i], v[i])
        second = maximum[i]
      }
      let denominator = second.squareRoot() / correction2SquareRoot + eps
      p[i] -= stepSize * (m[i] / denominator)
    }
  }
}

/// Adam with decoupled weight decay, with exactly `torch.optim.AdamW`'s update
/// (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019): each step first
/// scales the parameter by `1 − lr·weightDecay`, then applies Adam without L2 penalty.
/// PyTorch's default weight decay for AdamW is 0.01.
public final class AdamW: Adam {
  public override init(
    learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8,
    weightDecay: Float = 1e-2, amsgrad: Bool = false
  ) throws(OptimizerError) {
    try Self.validate(
      "AdamW", learningRate: learningRate, beta1: beta1, beta2: beta2, epsilon: epsilon, weightDecay: weightDecay)
    try super.init(
      learningRate: learningRate, beta1: beta1, beta2: beta2, epsilon: epsilon, weightDecay: weightDecay,
      amsgrad: amsgrad)
  }

  public override var name: String { "adamw" }
  override var decouplesWeightDecay: Bool { true }
}
