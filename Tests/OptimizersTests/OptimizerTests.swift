import NeuralNetwork
import Optimizers
import Tensors
import Testing
import _TestSupport

/// A parameter with a given gradient.
func parameter(_ values: [Float], gradient: [Float]) -> Tensor {
  let p = Tensor(values, shape: [values.count], requiresGradient: true)
  p.gradient = Tensor(gradient, shape: [gradient.count])
  return p
}

@Suite("Optimizers against hand-computed steps")
struct OptimizerStepTests {
  @Test func plainSGD() throws {
    let p = parameter([1, -2], gradient: [0.5, 0.25])
    try SGD(learningRate: 0.1).update([p])
    expectClose(p.values, [1 - 0.05, -2 - 0.025], relative: 1e-7)
  }

  @Test func sgdWithMomentumDampeningAndWeightDecay() throws {
    let sgd = try SGD(learningRate: 0.1, momentum: 0.9, dampening: 0.1, weightDecay: 0.01)
    let p = parameter([1], gradient: [0.5])
    sgd.update([p])
    // Step 1: g = 0.5 + 0.01·1 = 0.51; b = g (no dampening on the first step); p = 1 − 0.051.
    expectClose(p.values, [0.949], relative: 1e-7)
    p.gradient = Tensor([0.2], shape: [1])
    sgd.update([p])
    // Step 2: g = 0.2 + 0.01·0.949 = 0.20949; b = 0.9·0.51 + 0.9·0.20949 = 0.647541; p = 0.949 − 0.0647541.
    expectClose(p.values, [0.8842459], relative: 1e-6)
    #expect(sgd.namedState.map(\.name) == ["0.momentum_buffer"])
    expectClose(sgd.namedState[0].tensor.values, [0.647541], relative: 1e-6)
  }

  @Test func sgdWithNesterov() throws {
    let sgd = try SGD(learningRate: 0.1, momentum: 0.9, nesterov: true)
    let p = parameter([1], gradient: [0.5])
    sgd.update([p])
    // b = 0.5; step direction g + 0.9·b = 0.95.
    expectClose(p.values, [0.905], relative: 1e-7)
    p.gradient = Tensor([0.5], shape: [1])
    sgd.update([p])
    // b = 0.9·0.5 + 0.5 = 0.95; direction 0.5 + 0.855 = 1.355.
    expectClose(p.values, [0.905 - 0.1355], relative: 1e-6)
  }

  @Test func adamTwoSteps() throws {
    let adam = try Adam(learningRate: 0.1)
    let p = parameter([1, 2], gradient: [0.5, -1])
    adam.update([p])
    // The first Adam step moves each coordinate by lr·sign(g) (up to ε).
    expectClose(p.values, [0.9, 2.1], relative: 1e-6)
    p.gradient = Tensor([0.25, -1], shape: [2])
    adam.update([p])
    // m = 0.9·0.05 + 0.1·0.25 = 0.07 (coordinate 1); v = 0.999·0.00025 + 0.001·0.0625 = 0.00031225
    // m̂ = 0.07 / 0.19 ; v̂ = 0.00031225 / 0.001999
    let mHat = 0.07 / 0.19, vHat = 0.00031225 / 0.001999
    let expected = 0.9 - 0.1 * mHat / (vHat.squareRoot() + 1e-8)
    expectClose([p.values[0]], [Float(expected)], relative: 1e-6)
    expectClose([p.values[1]], [2.2], relative: 1e-6)
    #expect(adam.namedState.map(\.name) == ["0.exp_avg", "0.exp_avg_sq"])
  }

  @Test func adamWeightDecayIsAddedToTheGradient() throws {
    let adam = try Adam(learningRate: 0.1, weightDecay: 0.5)
    let p = parameter([1], gradient: [-0.25])
    adam.update([p])
    // g = −0.25 + 0.5 = 0.25 > 0, so the first step goes down by lr.
    expectClose(p.values, [0.9], relative: 1e-6)
  }

  @Test func adamWDecaysTheParameterFirst() throws {
    let adamW = try AdamW(learningRate: 0.1, weightDecay: 0.5)
    #expect(try AdamW().weightDecay == 0.01)
    let p = parameter([1], gradient: [-0.25])
    adamW.update([p])
    // p ← 1·(1 − 0.05) = 0.95, then the Adam step +0.1 (gradient is negative).
    expectClose(p.values, [1.05], relative: 1e-6)
  }

  @Test func amsgradKeepsTheMaximumSecondMoment() throws {
    let adam = try Adam(learningRate: 0.1, amsgrad: true)
    let plain = try Adam(learningRate: 0.1)
    let p = parameter([0], gradient: [1]), q = parameter([0], gradient: [1])
    adam.update([p])
    plain.update([q])
    p.gradient = Tensor([0.01], shape: [1])
    q.gradient = Tensor([0.01], shape: [1])
    adam.update([p])
    plain.update([q])
    // v after step 2 = 0.999·0.001 + 0.001·0.0001 < v max (0.001), so AMSGrad divides by the
    // larger value and takes the smaller step.
    #expect(adam.namedState.map(\.name) == ["0.exp_avg", "0.exp_avg_sq", "0.max_exp_avg_sq"])
    expectClose(adam.namedState[2].tensor.values, [0.001], relative: 1e-6)
    #expect(abs(p.values[0] - (-0.1)) < abs(q.values[0] - (-0.1)))
  }

  @Test func parametersWithoutGradientsAreSkipped() throws {
    let sgd = try SGD(learningRate: 1, momentum: 0.9)
    let a = parameter([1], gradient: [1])
    let b = Tensor([5], shape: [1], requiresGradient: true)
    sgd.update([a, b])
    #expect(b.values == [5])
    #expect(sgd.namedState.map(\.name) == ["0.momentum_buffer"])
  }

  @Test func zeroGradientsKeepsBuffers() throws {
    let p = parameter([1], gradient: [3])
    let buffer = p.gradient!
    try SGD(learningRate: 1).zeroGradients([p])
    // The zeros are written when the gradient is next read (or overwritten by backward).
    #expect(p.gradient === buffer)
    #expect(p.gradient!.values == [0])
  }
}

@Suite("Optimizer hyperparameters")
struct OptimizerValidationTests {
  @Test func invalidHyperparametersAreRejectedWithTheirValue() {
    #expect(
      throws: OptimizerError.invalidHyperparameter(
        optimizer: "SGD", name: "learning rate", value: -1, expected: "a finite value ≥ 0")
    ) {
      try SGD(learningRate: -1)
    }
    #expect(throws: OptimizerError.self) { try SGD(learningRate: 0.1, momentum: -0.5) }
    #expect(throws: OptimizerError.self) { try SGD(learningRate: 0.1, weightDecay: -1) }
    #expect(throws: OptimizerError.self) { try SGD(learningRate: 0.1, nesterov: true) }
    #expect(throws: OptimizerError.self) { try SGD(learningRate: 0.1, momentum: 0.9, dampening: 0.1, nesterov: true) }
    #expect(throws: OptimizerError.self) { try SGD(learningRate: .nan) }
    #expect(throws: OptimizerError.self) { try Adam(beta1: 1) }
    #expect(throws: OptimizerError.self) { try Adam(beta2: -0.1) }
    #expect(throws: OptimizerError.self) { try Adam(epsilon: -1) }
    #expect(throws: OptimizerError.self) { try AdamW(weightDecay: -0.1) }
    let message = (try? SGD(learningRate: -1)) == nil
    #expect(message)
    do {
      _ = try Adam(learningRate: -2)
    } catch {
      #expect(error.description == "Adam: learning rate is -2.0, expected a finite value ≥ 0")
    }
  }
}

@Suite("Learning-rate schedules")
struct ScheduleTests {
  @Test func constantAndStepDecay() throws {
    #expect(ConstantLearningRate().learningRate(atStep: 100, baseLearningRate: 0.1) == 0.1)
    let decay = try StepDecay(stepSize: 3, gamma: 0.5)
    #expect((0..<7).map { decay.learningRate(atStep: $0, baseLearningRate: 1) } == [1, 1, 1, 0.5, 0.5, 0.5, 0.25])
    #expect(throws: OptimizerError.self) { try StepDecay(stepSize: 0) }
  }

  @Test func cosineAnnealing() throws {
    let cosine = try CosineAnnealing(period: 4, minimum: 0.1)
    let rates = (0...4).map { cosine.learningRate(atStep: $0, baseLearningRate: 1.1) }
    expectClose(rates, [1.1, 0.1 + 0.5 * (1 + 0.70710678), 0.6, 0.1 + 0.5 * (1 - 0.70710678), 0.1], relative: 1e-6)
    #expect(throws: OptimizerError.self) { try CosineAnnealing(period: 0) }
  }

  @Test func linearWarmupThenSchedule() throws {
    let warmup = try LinearWarmup(steps: 4, startFactor: 0.25, then: StepDecay(stepSize: 10, gamma: 0.1))
    let rates = [0, 1, 2, 3, 4, 10].map { warmup.learningRate(atStep: $0, baseLearningRate: 1) }
    expectClose(rates, [0.25, 0.4375, 0.625, 0.8125, 1, 0.1], relative: 1e-6)
    #expect(throws: OptimizerError.self) { try LinearWarmup(steps: 2, startFactor: 0) }
  }
}

@Suite("Optimizers train a small problem")
struct ConvergenceTests {
  /// Fits y = 3x − 1 with a linear layer from a fixed seed.
  func fit(_ optimizer: Optimizer, steps: Int) -> Float {
    var generator = RandomGenerator(seed: 11)
    let x = Tensor(uniformShape: [64, 1], low: -1, high: 1, generator: &generator)
    let y = x * 3 - 1
    let model = Linear(inputSize: 1, outputSize: 1, seed: 4)
    var last: Float = .infinity
    for _ in 0..<steps {
      let loss = meanSquaredError(predicted: model(x), expected: y)
      last = loss.scalarValue
      loss.backward()
      optimizer.update(model.parameters)
      optimizer.zeroGradients(model.parameters)
    }
    return last
  }

  @Test func everyOptimizerConverges() throws {
    #expect(fit(try SGD(learningRate: 0.3), steps: 200) < 1e-6)
    #expect(fit(try SGD(learningRate: 0.1, momentum: 0.9, nesterov: true), steps: 200) < 1e-6)
    #expect(fit(try Adam(learningRate: 0.05), steps: 400) < 1e-4)
    #expect(fit(try AdamW(learningRate: 0.05, weightDecay: 0), steps: 400) < 1e-4)
    #expect(fit(try Adam(learningRate: 0.05, amsgrad: true), steps: 400) < 1e-4)
  }
}

/// Sign descent with momentum, defined outside the library: `Optimizer` can be subclassed
/// from any module.
final class SignMomentum: Optimizer {
  override var name: String { "sign-momentum" }
  override func makeStateTensors(elementCount: Int) -> [(name: String, tensor: Tensor)] {
    [("velocity", Tensor(zeros: [elementCount]))]
  }
  override func updateParameter(
    _ parameter: UnsafeMutableBufferPointer<Float>, gradient: UnsafeBufferPointer<Float>,
    state: inout ParameterState, step: Int
  ) {
    let velocity = state.tensors[0].tensor.mutableBuffer
    for i in parameter.indices {
      velocity[i] = 0.5 * velocity[i] + gradient[i]
      parameter[i] -= learningRate * (velocity[i] > 0 ? 1 : velocity[i] < 0 ? -1 : 0)
    }
  }
}

@Suite("Optimizers from other modules")
struct CustomOptimizerTests {
  @Test func aSubclassStepsWithItsOwnRuleAndState() {
    let parameter = Tensor([1, -1, 0], shape: [3], requiresGradient: true)
    parameter.gradient = Tensor([2, -3, 0], shape: [3])
    let optimizer = SignMomentum(learningRate: 0.1)
    optimizer.prepare([parameter])
    optimizer.update([parameter])
    expectClose(parameter.values, [0.9, -0.9, 0], relative: 1e-6)
    #expect(optimizer.namedState.map(\.name) == ["0.velocity"])
    #expect(optimizer.parameterStates[0]?.step == 1)
  }
}
