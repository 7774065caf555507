import Tensors

/// Why an optimizer or schedule cannot be built with the given hyperparameters.
public enum OptimizerError: Error, Equatable, Sendable, CustomStringConvertible {
  /// `name` is `value`, but must be `expected`.
  case invalidHyperparameter(optimizer: String, name: String, value: Double, expected: String)

  public var description: String {
    switch self {
    case .invalidHyperparameter(let optimizer, let name, let value, let expected):
      "\(optimizer): \(name) is \(value), expected \(expected)"
    }
  }
}

/// A first-order optimizer: turns accumulated gradients into a parameter update.
///
/// Subclasses implement ``updateParameter(_:gradient:state:step:)`` for one parameter; the
/// base walks the parameters, skips those without a gradient (as `torch.optim` does) and
/// keeps each parameter's state (momentum buffers, moment estimates) by position.
open class Optimizer {
  /// The step size of the next update; a learning-rate schedule sets it before each step.
  public var learningRate: Float
  /// Per parameter, by position: its state tensors (created at its first update) and how
  /// many updates it has had.
  public var parameterStates: [ParameterState?] = []

  /// One parameter's optimizer state.
  public struct ParameterState {
    /// Named state tensors, with `torch.optim`'s names (`momentum_buffer`, `exp_avg`, …).
    public var tensors: [(name: String, tensor: Tensor)]
    /// Updates applied to this parameter so far.
    public var step: Int
    /// State with the given tensors and update count.
    public init(tensors: [(name: String, tensor: Tensor)] = [], step: Int = 0) {
      self.tensors = tensors
      self.step = step
    }
  }

  /// An optimizer stepping at `learningRate`; subclasses (in any module) check their other
  /// hyperparameters and override ``updateParameter(_:gradient:state:step:)`` and, for
  /// state, ``makeStateTensors(elementCount:)``.
  public init(learningRate: Float) { self.learningRate = learningRate }

  /// A short name, for messages and logs.
  open var name: String { "optimizer" }

  /// Creates the state of every parameter that has none yet, so that all persistent
  /// memory exists before the first step (a later ``update(_:)`` does the same lazily).
  public func prepare(_ parameters: [Tensor]) {
    if parameterStates.count < parameters.count {
      parameterStates += Array(repeating: nil, count: parameters.count - parameterStates.count)
    }
    for (index, parameter) in parameters.enumerated() where parameterStates[index] == nil {
      parameterStates[index] = ParameterState(tensors: makeStateTensors(elementCount: parameter.count))
    }
  }

  /// Applies one update to each of `parameters` that has a gradient, then leaves the
  /// gradients as they are (call ``zeroGradients(_:)`` before the next window).
  public func update(_ parameters: [Tensor]) {
    if parameterStates.count < parameters.count {
      parameterStates += Array(repeating: nil, count: parameters.count - parameterStates.count)
    }
    for (index, parameter) in parameters.enumerated() {
      guard let gradient = parameter.gradient else { continue }
      var state = parameterStates[index] ?? ParameterState(tensors: makeStateTensors(elementCount: parameter.count))
      state.step += 1
      // Shape-only parameters (memory tracing) get their state and no arithmetic.
      if parameter.hasElements && gradient.hasElements {
        updateParameter(parameter.mutableBuffer, gradient: gradient.buffer, state: &state, step: state.step)
      }
      parameterStates[index] = state
    }
  }

  /// Zeros the gradients of `parameters`, keeping their buffers.
  public func zeroGradients(_ parameters: [Tensor]) {
    for parameter in parameters { parameter.zeroGradient() }
  }

  /// The state tensors of a parameter of `elementCount` scalars, created (as zeros) before
  /// its first update, with `torch.optim`'s names.
  open func makeStateTensors(elementCount: Int) -> [(name: String, tensor: Tensor)] { [] }

  /// The element counts of the state tensors of a parameter of `elementCount` scalars,
  /// without making them (for memory planning).
  public func makeStateTensorCounts(elementCount: Int) -> [Int] {
    ShapeTracing.run(AllocationTrace()) { makeStateTensors(elementCount: elementCount).map(\.tensor.count) }
  }

  /// Updates one parameter in place.
  /// - Parameters:
  ///   - parameter: the values to update.
  ///   - gradient: its accumulated gradient.
  ///   - state: its state, as ``makeStateTensors(elementCount:)`` made it.
  ///   - step: 1 at its first update.
  open func updateParameter(
    _ parameter: UnsafeMutableBufferPointer<Float>, gradient: UnsafeBufferPointer<Float>,
    state: inout ParameterState, step: Int
  ) {
    fatalError("\(type(of: self)) must implement updateParameter")
  }

  /// Every state tensor with a name `"<parameter index>.<state name>"`.
  public var namedState: [(name: String, tensor: Tensor)] {
    parameterStates.enumerated().flatMap { index, state in
      (state?.tensors ?? []).map { ("\(index).\($0.name)", $0.tensor) }
    }
  }

  static func check(
    _ condition: Bool, _ optimizer: String, _ name: String, _ value: Float, _ expected: String
  ) throws(OptimizerError) {
    guard condition else {
      throw .invalidHyperparameter(optimizer: optimizer, name: name, value: Double(value), expected: expected)
    }
  }
}
