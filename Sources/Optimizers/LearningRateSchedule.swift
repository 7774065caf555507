#if canImport(Glibc)
  import Glibc
#endif

/// The learning rate as a function of the optimizer step. Stepped once per optimizer
/// step (never per micro-batch); `step` is the number of optimizer steps already taken,
/// so the first step uses `step == 0`.
public protocol LearningRateSchedule: Sendable {
  /// The learning rate for optimizer step `step` (0-based) given the base rate.
  func learningRate(atStep step: Int, baseLearningRate: Float) -> Float
}

/// The base rate at every step.
public struct ConstantLearningRate: LearningRateSchedule {
  /// The constant schedule.
  public init() {}
  public func learningRate(atStep step: Int, baseLearningRate: Float) -> Float { baseLearningRate }
}

/// The base rate times `gamma` every `stepSize` steps, as `torch.optim.lr_scheduler.StepLR`.
public struct StepDecay: LearningRateSchedule {
  /// Optimizer steps between decays.
  public let stepSize: Int
  /// The factor of each decay.
  public let gamma: Float

  /// - Parameters:
  ///   - stepSize: ≥ 1 optimizer steps between decays.
  ///   - gamma: the factor applied at each decay, > 0.
  public init(stepSize: Int, gamma: Float = 0.1) throws(OptimizerError) {
    try Optimizer.check(stepSize >= 1, "StepDecay", "step size", Float(stepSize), "an integer ≥ 1")
    try Optimizer.check(gamma > 0 && gamma.isFinite, "StepDecay", "gamma", gamma, "a finite value > 0")
    self.stepSize = stepSize
    self.gamma = gamma
  }

  public func learningRate(atStep step: Int, baseLearningRate: Float) -> Float {
    Float(Double(baseLearningRate) * pow(Double(gamma), Double(step / stepSize)))
  }
}

/// Cosine annealing from the base rate to `minimum` over `period` steps, as
/// `torch.optim.lr_scheduler.CosineAnnealingLR` in closed form
/// (Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", 2017).
public struct CosineAnnealing: LearningRateSchedule {
  /// Steps from the base rate to the minimum (`T_max`).
  public let period: Int
  /// The rate reached after `period` steps (`eta_min`).
  public let minimum: Float

  /// - Parameters:
  ///   - period: ≥ 1 optimizer steps from the base rate to `minimum` (`T_max`).
  ///   - minimum: the rate reached at `period` (`eta_min`), ≥ 0.
  public init(period: Int, minimum: Float = 0) throws(OptimizerError) {
    try Optimizer.check(period >= 1, "CosineAnnealing", "period", Float(period), "an integer ≥ 1")
    try Optimizer.check(minimum >= 0 && minimum.isFinite, "CosineAnnealing", "minimum", minimum, "a finite value ≥ 0")
    self.period = period
    self.minimum = minimum
  }

  public func learningRate(atStep step: Int, baseLearningRate: Float) -> Float {
    let progress = Double(step) / Double(period)
    let base = Double(baseLearningRate), low = Double(minimum)
    return Float(low + (base - low) * (1 + cos(Double.pi * progress)) / 2)
  }
}

/// A linear ramp from `startFactor` × the rate to the full rate over `steps` steps, then
/// `schedule`, as `LinearLR` chained before another scheduler.
public struct LinearWarmup: LearningRateSchedule {
  /// Warm-up steps.
  public let steps: Int
  /// The fraction of the rate at step 0.
  public let startFactor: Float
  /// The schedule the warm-up scales and hands over to.
  public let schedule: any LearningRateSchedule

  /// - Parameters:
  ///   - steps: ≥ 1 warm-up steps.
  ///   - startFactor: in `(0, 1]`, the fraction of the rate at step 0; PyTorch's default is 1/3.
  ///   - schedule: what the warm-up scales, and what follows it.
  public init(
    steps: Int, startFactor: Float = 1.0 / 3.0, then schedule: any LearningRateSchedule = ConstantLearningRate()
  ) throws(OptimizerError) {
    try Optimizer.check(steps >= 1, "LinearWarmup", "steps", Float(steps), "an integer ≥ 1")
    try Optimizer.check(
      startFactor > 0 && startFactor <= 1, "LinearWarmup", "start factor", startFactor, "a value in (0, 1]")
    self.steps = steps
    self.startFactor = startFactor
    self.schedule = schedule
  }

  public func learningRate(atStep step: Int, baseLearningRate: Float) -> Float {
    let after = schedule.learningRate(atStep: step, baseLearningRate: baseLearningRate)
    guard step < steps else { return after }
    let factor = Double(startFactor) + (1 - Double(startFactor)) * Double(step) / Double(steps)
    return Float(Double(after) * factor)
  }
}
