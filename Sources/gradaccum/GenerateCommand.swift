import ArgumentParser
import Foundation
import GradAccum

struct GenerateCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "generate",
    abstract: "Continue a prompt with a trained token model.",
    discussion: """
      The model runs in evaluation mode on the prompt and the tokens generated so far (at \
      most as many as its positional table holds, the latest ones) and picks each next \
      token from the last position's logits: the largest with --temperature 0 (greedy, as \
      PyTorch's argmax), otherwise a seeded draw from the softmax of logits / temperature, \
      among the --top-k largest when given. Byte models (a vocabulary of 256) print text; \
      --json prints {"input_ids": [...]}, the prompt and the continuation.
      """)

  @OptionGroup var modelOptions: ModelOptions

  @Option(name: .customLong("init"), help: "The weights: a safetensors file (or a training checkpoint).")
  var initial: String

  @Option(help: "The prompt as text, for byte models (each UTF-8 byte is a token).")
  var prompt: String?

  @Option(help: "The prompt as token ids, comma-separated, such as 1,2,3.")
  var promptIds: String?

  @Option(parsing: .unconditional, help: "Tokens to generate.")
  var tokens: Int

  @Option(parsing: .unconditional, help: "0 for greedy decoding; above 0 samples from softmax(logits / T).")
  var temperature: Float = 0

  @Option(parsing: .unconditional, help: "Sample among the K most likely tokens only.")
  var topK: Int?

  @Option(parsing: .unconditional, help: "Seed of the draws (with --temperature above 0).")
  var seed: UInt64 = 0

  @Flag(help: "Print {\"input_ids\": [...]} (prompt and continuation) instead of text.")
  var json = false

  func validate() throws {
    guard (prompt == nil) != (promptIds == nil) else { throw UsageError("give one of --prompt TEXT and --prompt-ids 1,2,3") }
    if let prompt, prompt.isEmpty { throw UsageError("--prompt is empty; expected at least one character") }
    guard tokens >= 0 else { throw UsageError("--tokens is \(tokens), expected an integer ≥ 0") }
    guard temperature >= 0 && temperature.isFinite else {
      throw UsageError("--temperature is \(temperature), expected a finite number ≥ 0 (0 is greedy)")
    }
    if let topK, topK < 1 { throw UsageError("--top-k is \(topK), expected an integer ≥ 1") }
  }

  func run() throws {
    let specification = try modelOptions.parsedModel()
    let model = try buildModel(specification, seed: 0)
    guard let embedding = model.layers.first as? Embedding else {
      throw UsageError("generate needs a token model, one that starts with embedding(V,d)")
    }
    let vocabulary = embedding.vocabularySize
    let promptTokens: [Int]
    if let prompt {
      guard vocabulary == 256 else {
        throw UsageError(
          "--prompt is text, whose tokens are bytes, but \(embedding) has a vocabulary of \(vocabulary), not 256; give --prompt-ids")
      }
      promptTokens = Array(prompt.utf8).map(Int.init)
    } else {
      let parts = promptIds!.split(separator: ",", omittingEmptySubsequences: false)
      let ids = parts.map { Int($0.trimmingCharacters(in: .whitespaces)) }
      guard !ids.isEmpty, let valid = ids as? [Int], valid.allSatisfy({ $0 >= 0 && $0 < vocabulary }) else {
        throw UsageError(
          "--prompt-ids \"\(abbreviated(promptIds!))\" is not a list of ids from 0 to \(vocabulary - 1) such as 1,2,3")
      }
      promptTokens = valid
    }
    let positions = model.layers.lazy.compactMap { $0 as? PositionalEmbedding }.first
    try userFacing { try model.loadState(path: initial) }
    let outputWidth = try userFacing { try model.outputShape(forInput: [1]).last ?? 0 }
    if let topK, topK > outputWidth {
      throw UsageError("--top-k is \(topK), more than the model's \(outputWidth) outputs")
    }
    let sequence = model.generate(
      prompt: promptTokens, count: tokens, sampling: TokenSampling(temperature: temperature, topK: topK, seed: seed),
      contextLength: positions?.maxLength)
    if json {
      print(JSONOutput.line(["input_ids": sequence]))
    } else if vocabulary == 256 && outputWidth == 256 {
      print(String(decoding: sequence.map(UInt8.init), as: UTF8.self))
    } else {
      print(sequence.map(String.init).joined(separator: ","))
    }
  }
}
