import ArgumentParser
import Foundation
import GradAccum

struct EvaluateCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "evaluate",
    abstract: "Report a trained model's loss and accuracy on a CSV file, or token loss and perplexity on sequences.",
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
    let network = try buildModel(specification, seed: 0)
    let loss: Loss
    let dataset: any Dataset
    if dataOptions.isSequenceData {
      loss = try SequenceOptions.loss(lossOptions.loss)
      let data = try dataOptions.sequenceOptions.load(path: dataOptions.data)
      try dataOptions.sequenceOptions.check(data, model: network, path: dataOptions.data)
      dataset = data
    } else {
      loss = lossOptions.loss.loss
      let data = try dataOptions.load(loss: loss, inputShape: try modelOptions.parsedInputShape())
      try checkCompatible(model: network, loss: loss, dataset: data, path: dataOptions.data)
      dataset = data
    }
    try userFacing { try network.loadState(path: initial) }
    let evaluation = network.evaluate(dataset, loss: loss, batchSize: batch)
    if json {
      print(JSONOutput.line(evaluation))
    } else if evaluation.tokenCount == 0 {
      print("\(evaluation.sampleCount) sequences, no predicted token (every label after the first position is -100, or every sample has one token): no token loss")
    } else if let tokens = evaluation.tokenCount, let perplexity = evaluation.perplexity {
      print(
        "\(evaluation.sampleCount) sequences, \(tokens) predicted tokens: token loss \(String(format: "%.6g", evaluation.loss)), perplexity \(String(format: "%.4g", perplexity))"
      )
    } else {
      var line =
        "\(evaluation.sampleCount) samples: \(lossOptions.loss.rawValue) loss \(String(format: "%.6g", evaluation.loss))"
      if let accuracy = evaluation.accuracy { line += ", accuracy \(String(format: "%.2f", 100 * accuracy))%" }
      print(line)
    }
  }
}
