import GradAccum

// Random 64-feature samples with labels from a fixed rule, as a stand-in data set.
var generator = RandomGenerator(seed: 1)
let inputs = Tensor(uniformShape: [400, 64], low: 0, high: 1, generator: &generator)
let labels = (0..<400).map { Float(Int(inputs.buffer[$0 * 64] * 10) % 10) }
let dataset = TensorDataset(inputs: inputs, targets: Tensor(labels, shape: [400]))

// As written in the design document:
let model = Sequential {
  Linear(inputSize: 64, outputSize: 128); ReLU(); Linear(inputSize: 128, outputSize: 10)
}
let trainer = try Trainer(
  model: model, optimizer: Adam(learningRate: 1e-3),
  loss: .crossEntropy, targetBatch: 40, memoryBudget: .mb(64))
print(trainer.plan)  // micro-batch, accumulation count, memory breakdown
let report = try trainer.fit(dataset, epochs: 3)

print("epoch losses:", report.epochLosses, "steps:", report.steps, "budget violations:", report.budgetViolations)
