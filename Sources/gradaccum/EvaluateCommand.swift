import ArgumentParser
import Foundation
import GradAccum

struct EvaluateCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "evaluate",
    abstract: "Report a trained model's loss and accuracy on a CSV file.",
    discussion: """
      The model runs in evaluation mode (dropout off, batch normalization on its running \
      statistics) without an autograd graph, --batch samples at a time. The loss is the \
      loss's own mean over the file; accuracy is reported for cross-entropy.
      """)

  @OptionGroup var modelOptions: ModelOptions

  @OptionGroup var lossOptions: LossOptions

  @Option(name: .customLong("init"), help: "The weights: a safetensors file with PyTorch's state_dict names.")
  var initial: String

  @OptionGroup var dataOptions: DataOptions

  @Option(help: "Samples per forward pass.")
  var batch = 256

  @Flag(help: "Print the result as one JSON object.")
  var json = false

  func validate() throws {
    guard batch >= 1 else { throw UsageError("--batch is \(batch), expected an integer ≥ 1") }
  }

  func run() throws {
    let specification = try modelOptions.parsedModel()
    let loss = lossOptions.loss.loss
    let inputShape = try modelOptions.parsedInputShape()
    let dataset = try dataOptions.load(loss: loss, inputShape: inputShape)
    let network = try buildModel(specification, seed: 0)
    try checkCompatible(model: network, loss: loss, dataset: dataset, path: dataOptions.data)
    try userFacing { try network.loadState(path: initial) }
    let evaluation = network.evaluate(dataset, loss: loss, batchSize: batch)
    if json {
      print(JSONOutput.line(evaluation))
    } else {
      var line =
        "\(evaluation.sampleCount) samples: \(lossOptions.loss.rawValue) loss \(String(format: "%.6g", evaluation.loss))"
      if let accuracy = evaluation.accuracy { line += ", accuracy \(String(format: "%.2f", 100 * accuracy))%" }
      print(line)
    }
  }
}
