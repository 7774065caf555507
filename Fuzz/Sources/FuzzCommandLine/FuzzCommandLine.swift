import CFuzzerDriver
import GradAccum

/// A whole `plan` command line, as the command runs it before allocating anything: five
/// lines of text give the model specification, one sample's shape, the budget, the target
/// batch and a list of micro-batches. Whatever parses is planned on a shape-only model (the
/// trainer's plan, margin included), and each micro-batch that could fit is predicted.
/// Nothing may trap, and nothing may be allocated beyond libFuzzer's limit.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
  let fields = text.split(separator: "\n", maxSplits: 4, omittingEmptySubsequences: false).map(String.init)
  guard fields.count == 5, let specification = try? ModelSpecification(parsing: fields[0]),
    let shape = SampleShape.parse(fields[1]), let budget = try? MemoryBudget(parsing: fields[2]),
    let targetBatch = Int(fields[3]), targetBatch >= 1
  else { return 0 }
  let model = ShapeTracing.run(AllocationTrace()) { specification.build(seed: 0) }
  guard let optimizer = try? SGD(learningRate: 0.1) else { return 0 }
  var options = TrainerOptions()
  options.inputShape = shape
  let loss: Loss = fields[3].count % 2 == 0 ? .crossEntropy : .meanSquaredError
  guard let plan = try? Trainer.plan(
    model: model, optimizer: optimizer, loss: loss, targetBatch: targetBatch, memoryBudget: budget, options: options)
  else { return 0 }
  precondition(plan.microBatch >= 1 && plan.microBatch <= targetBatch, "micro-batch \(plan.microBatch) of \(targetBatch)")
  precondition(plan.predictedPeakBytes <= budget.bytes, "a plan over its budget")
  precondition(plan.windowSizes.sizeCounts.map { $0.size * $0.count }.reduce(0, +) == targetBatch)
  _ = plan.description
  guard let outputShape = try? model.outputShape(forInput: shape),
    let estimator = try? MemoryEstimator(
      model: model, sampleShape: shape, targetShape: loss.targetShape(outputShape: outputShape), loss: loss,
      optimizer: optimizer)
  else { return 0 }
  let largest = estimator.largestFittingMicroBatch(bytes: budget.bytes)
  for item in fields[4].split(separator: ",").prefix(8) {
    guard let microBatch = Int(item), microBatch >= 1, microBatch <= largest else { continue }
    _ = estimator.estimate(microBatch: microBatch)
  }
  return 0
}

/// The program's entry point (SwiftPM names it `FuzzCommandLine_main`): hands control to libFuzzer.
@_cdecl("FuzzCommandLine_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  var count = argc
  var arguments = argv
  return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzz(data!, size) }
}
