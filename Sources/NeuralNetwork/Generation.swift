import Foundation
import Tensors

/// How ``Layer/generate(prompt:count:sampling:contextLength:)`` picks each next token.
public struct TokenSampling: Sendable, Equatable {
  /// 0 for greedy decoding (the first of equal largest logits, as `torch.argmax`);
  /// otherwise logits are divided by it before the softmax.
  public var temperature: Float
  /// Sample only among the `topK` largest logits (`nil`: all).
  public var topK: Int?
  /// The seed of the draws (unused when greedy).
  public var seed: UInt64

  /// Greedy decoding.
  public static let greedy = TokenSampling(temperature: 0)

  /// - Precondition: `temperature ≥ 0` and finite; `topK ≥ 1` when given.
  public init(temperature: Float, topK: Int? = nil, seed: UInt64 = 0) {
    precondition(temperature >= 0 && temperature.isFinite, "temperature must be finite and ≥ 0, got \(temperature)")
    precondition(topK.map { $0 >= 1 } ?? true, "top-k must be at least 1")
    self.temperature = temperature
    self.topK = topK
    self.seed = seed
  }
}

extension Layer {
  /// Continues `prompt` by `count` tokens, one at a time: the model (a token model, ids
  /// `[1, s]` to logits `[1, s, V]`) runs in evaluation mode without a graph on the
  /// sequence so far, at most its last `contextLength` tokens, and the last position's
  /// logits choose the next token.
  /// - Returns: the prompt followed by the `count` new tokens.
  /// - Precondition: the prompt is not empty and its ids are in the model's vocabulary.
  public func generate(prompt: [Int], count: Int, sampling: TokenSampling = .greedy, contextLength: Int? = nil)
    -> [Int]
  {
    precondition(!prompt.isEmpty, "generation needs a prompt of at least one token")
    precondition(count >= 0, "the number of tokens to generate must be ≥ 0, got \(count)")
    setTraining(false)
    defer { setTraining(true) }
    var generator = RandomGenerator(seed: sampling.seed)
    var tokens = prompt
    GradientRecording.withoutRecording {
      for _ in 0..<count {
        let context = Array(tokens.suffix(contextLength ?? tokens.count))
        let logits = self(Tensor(context.map(Float.init), shape: [1, context.count]))
        let vocabulary = logits.shape[logits.rank - 1]
        let values = logits.values
        let last = Array(values[(values.count - vocabulary)...])
        tokens.append(Self.nextToken(logits: last, sampling: sampling, generator: &generator))
      }
    }
    return tokens
  }

  /// The token `logits` choose: the first largest when greedy, else a draw from the
  /// softmax of `logits / temperature` over the `topK` largest.
  static func nextToken(logits: [Float], sampling: TokenSampling, generator: inout RandomGenerator) -> Int {
    var best = 0
    for index in logits.indices where logits[index] > logits[best] { best = index }
    guard sampling.temperature > 0 else { return best }
    var candidates = Array(logits.indices)
    if let topK = sampling.topK, topK < logits.count {
      candidates.sort { logits[$0] != logits[$1] ? logits[$0] > logits[$1] : $0 < $1 }
      candidates = Array(candidates.prefix(topK))
    }
    let largest = Double(logits[best]) / Double(sampling.temperature)
    let weights = candidates.map { (Double(logits[$0]) / Double(sampling.temperature) - largest).exp }
    let total = weights.reduce(0, +)
    // A uniform draw in [0, total) from 53 random bits.
    var draw = Double(generator.next() >> 11) / Double(1 << 53) * total
    for (candidate, weight) in zip(candidates, weights) {
      draw -= weight
      if draw < 0 { return candidate }
    }
    return candidates.last!
  }
}

extension Double {
  fileprivate var exp: Double { Foundation.exp(self) }
}
