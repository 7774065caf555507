import Tensors

/// Why a model specification cannot be parsed.
public enum ModelSpecificationError: Error, Equatable, Sendable, CustomStringConvertible {
  case empty
  case unbalancedParentheses(text: String)
  case unknownLayer(name: String, position: Int, known: [String])
  case invalidArguments(layer: String, position: Int, reason: String)

  public var description: String {
    switch self {
    case .empty:
      "the model specification is empty; expected layers such as \"linear(784,512) relu linear(512,10)\""
    case .unbalancedParentheses(let text):
      "unbalanced parentheses in model specification \"\(text)\""
    case .unknownLayer(let name, let position, let known):
      "unknown layer \"\(name)\" at position \(position) of the model specification; known layers: \(known.joined(separator: ", "))"
    case .invalidArguments(let layer, let position, let reason):
      "layer \(position) of the model specification, \(layer): \(reason)"
    }
  }
}

/// A model written as text: layers separated by whitespace, PyTorch names in lower case,
/// arguments in parentheses, as `linear(784,512) relu dropout(0.1) linear(512,10)`.
///
/// Layers are numbered from 0 in order, so parameters are named as in the equivalent
/// `nn.Sequential` (`0.weight`, `0.bias`, `3.weight`, …).
public struct ModelSpecification: Sendable, Equatable, CustomStringConvertible {
  /// One layer: its name and its arguments, positional then `key=value`.
  public struct LayerSpecification: Sendable, Equatable {
    /// The layer as written.
    public let text: String
    /// The layer's name in lower case (`linear`).
    public let name: String
    /// Arguments without a name, in order.
    public let positional: [String]
    /// `key=value` arguments.
    public let keywords: [String: String]
  }

  /// Layer names this parser knows, in the registry's order.
  public static var knownLayers: [String] { registry.map(\.name) }

  /// The most parameters one layer may have (2^40).
  public static let maximumLayerParameters = 1 << 40

  /// The layers, in order.
  public let layers: [LayerSpecification]
  /// The text it was parsed from.
  public let text: String

  public var description: String { text }

  /// Parses `text`, checking layer names and arguments.
  /// - Throws: ``ModelSpecificationError`` naming the layer and what was expected.
  public init(parsing text: String) throws(ModelSpecificationError) {
    self.text = text
    var tokens: [String] = []
    var current = ""
    var depth = 0
    for character in text {
      if character == "(" { depth += 1 }
      if character == ")" {
        depth -= 1
        guard depth >= 0 else { throw .unbalancedParentheses(text: text) }
      }
      if character.isWhitespace && depth == 0 {
        if !current.isEmpty { tokens.append(current) }
        current = ""
      } else if !character.isWhitespace {
        current.append(character)
      }
    }
    guard depth == 0 else { throw .unbalancedParentheses(text: text) }
    if !current.isEmpty { tokens.append(current) }
    guard !tokens.isEmpty else { throw .empty }
    var layers: [LayerSpecification] = []
    for (position, token) in tokens.enumerated() {
      let name: String
      var arguments: [String] = []
      if let open = token.firstIndex(of: "(") {
        guard token.last == ")", token.firstIndex(of: ")") == token.index(before: token.endIndex) else {
          throw .invalidArguments(layer: token, position: position, reason: "expected name(arguments)")
        }
        name = String(token[..<open]).lowercased()
        let inside = token[token.index(after: open)..<token.index(before: token.endIndex)]
        arguments =
          inside.isEmpty ? [] : inside.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
      } else {
        name = token.lowercased()
      }
      guard let entry = Self.registry.first(where: { $0.name == name }) else {
        throw .unknownLayer(name: name, position: position, known: Self.knownLayers)
      }
      var positional: [String] = []
      var keywords: [String: String] = [:]
      for argument in arguments {
        if let equals = argument.firstIndex(of: "=") {
          let key = String(argument[..<equals]).lowercased().trimmingWhitespace
          guard keywords[key] == nil else {
            throw .invalidArguments(layer: token, position: position, reason: "argument \"\(key)\" is given twice")
          }
          keywords[key] = String(argument[argument.index(after: equals)...])
        } else {
          guard keywords.isEmpty else {
            throw .invalidArguments(
              layer: token, position: position, reason: "positional argument after a keyword argument")
          }
          positional.append(argument)
        }
        if argument.isEmpty {
          throw .invalidArguments(layer: token, position: position, reason: "empty argument")
        }
      }
      let layer = LayerSpecification(text: token, name: name, positional: positional, keywords: keywords)
      // Counts, names, types and ranges are checked now; building cannot fail later.
      _ = try entry.read(LayerArguments(layer: layer, token: token, position: position))
      layers.append(layer)
    }
    self.layers = layers
  }

  /// The model, with parameters initialized from `seed`.
  public func build(seed: UInt64) -> Sequential {
    var generator = RandomGenerator(seed: seed)
    // Every layer was checked at parse time, so reading its arguments cannot fail.
    let built = layers.enumerated().map { position, layer in
      let entry = Self.registry.first { $0.name == layer.name }!
      let make = try! entry.read(LayerArguments(layer: layer, token: layer.text, position: position))
      return make(&generator)
    }
    return Sequential(built)
  }

  /// How one layer is read: its name, and a function that checks its arguments (counts,
  /// names, types, ranges) and returns how to build it.
  struct LayerEntry: Sendable {
    let name: String
    let read: @Sendable (LayerArguments) throws(ModelSpecificationError) -> (inout RandomGenerator) -> any Layer
  }

  /// Every layer the parser knows, one entry each: a name missing here is an unknown layer.
  static let registry: [LayerEntry] = [
    LayerEntry(name: "linear") { arguments throws(ModelSpecificationError) in
      try arguments.expect(2...2, keywords: ["bias"])
      let input = try arguments.size(0, "in_features"), output = try arguments.size(1, "out_features")
      let bias = try arguments.flag("bias", default: true)
      try arguments.checkParameterCount(input, output)
      return { Linear(inputSize: input, outputSize: output, bias: bias, generator: &$0) }
    },
    LayerEntry(name: "embedding") { arguments throws(ModelSpecificationError) in
      try arguments.expect(2...2, keywords: [])
      let vocabulary = try arguments.size(0, "num_embeddings"), width = try arguments.size(1, "embedding_dim")
      try arguments.checkParameterCount(vocabulary, width)
      return { Embedding(vocabularySize: vocabulary, width: width, generator: &$0) }
    },
    LayerEntry(name: "positionalembedding") { arguments throws(ModelSpecificationError) in
      try arguments.expect(2...2, keywords: [])
      let length = try arguments.size(0, "max_length"), width = try arguments.size(1, "dim")
      try arguments.checkParameterCount(length, width)
      return { PositionalEmbedding(maxLength: length, width: width, generator: &$0) }
    },
    LayerEntry(name: "transformerblock") { arguments throws(ModelSpecificationError) in
      try arguments.expect(2...2, keywords: ["ff", "dropout"])
      let width = try arguments.size(0, "dim"), heads = try arguments.size(1, "heads")
      guard width % heads == 0 else { throw arguments.fail("dim \(width) must be a multiple of heads \(heads)") }
      let feedForward = try arguments.size(keyword: "ff", default: 4 * width)
      var dropout: Float = 0
      if let text = arguments.layer.keywords["dropout"] {
        guard let value = Float(text.trimmingWhitespace), value >= 0, value < 1 else {
          throw arguments.fail("dropout must be a probability in [0, 1), got \"\(abbreviated(text))\"")
        }
        dropout = value
      }
      try arguments.checkParameterCount(4 * width + 2 * feedForward + 8, width)
      return { generator in
        let block = TransformerBlock(
          width: width, heads: heads, feedForward: feedForward, dropout: dropout, generator: &generator)
        if dropout > 0 { block.generator = RandomGenerator(seed: generator.next()) }
        return block
      }
    },
    LayerEntry(name: "conv2d") { arguments throws(ModelSpecificationError) in
      try arguments.expect(3...3, keywords: ["stride", "padding", "dilation", "bias"])
      let input = try arguments.size(0, "in_channels"), output = try arguments.size(1, "out_channels")
      let kernel = try arguments.size(2, "kernel_size")
      let stride = try arguments.size(keyword: "stride", default: 1)
      let dilation = try arguments.size(keyword: "dilation", default: 1)
      let padding = try arguments.padding()
      let bias = try arguments.flag("bias", default: true)
      try arguments.checkParameterCount(input, output, kernel, kernel)
      return {
        Conv2d(
          inputChannels: input, outputChannels: output, kernelSize: kernel, stride: stride, padding: padding,
          dilation: dilation, bias: bias, generator: &$0)
      }
    },
    poolEntry("maxpool2d", .maximum),
    poolEntry("avgpool2d", .average),
    LayerEntry(name: "adaptiveavgpool2d") { arguments throws(ModelSpecificationError) in
      try arguments.expect(1...2, keywords: [])
      let height = try arguments.size(0, "output_size")
      let width = arguments.layer.positional.count > 1 ? try arguments.size(1, "output_size") : height
      return { _ -> any Layer in
        height == 1 && width == 1
          ? GlobalAveragePool2d() as any Layer : AdaptiveAvgPool2d(outputHeight: height, outputWidth: width)
      }
    },
    batchNormEntry("batchnorm1d") { BatchNorm1d(features: $0, epsilon: $1, momentum: $2) },
    batchNormEntry("batchnorm2d") { BatchNorm2d(features: $0, epsilon: $1, momentum: $2) },
    LayerEntry(name: "layernorm") { arguments throws(ModelSpecificationError) in
      try arguments.expect(1...1, keywords: ["eps"])
      let size = try arguments.size(0, "normalized_shape")
      let epsilon = try arguments.positiveNumber("eps", default: 1e-5)
      return { _ in LayerNorm(size: size, epsilon: epsilon) }
    },
    plainEntry("relu") { ReLU() },
    plainEntry("tanh") { Tanh() },
    plainEntry("sigmoid") { Sigmoid() },
    plainEntry("gelu") { GELU() },
    plainEntry("flatten") { Flatten() },
    LayerEntry(name: "dropout") { arguments throws(ModelSpecificationError) in
      try arguments.expect(0...1, keywords: ["p"])
      let text = arguments.layer.positional.first ?? arguments.layer.keywords["p"] ?? "0.5"
      guard let probability = Float(text.trimmingWhitespace), probability >= 0, probability < 1 else {
        throw arguments.fail("p must be a probability in [0, 1), got \"\(abbreviated(text))\"")
      }
      return { Dropout(probability: probability, seed: $0.next()) }
    },
  ]

  /// A layer without arguments.
  static func plainEntry(_ name: String, _ make: @escaping @Sendable () -> any Layer) -> LayerEntry {
    LayerEntry(name: name) { arguments throws(ModelSpecificationError) in
      try arguments.expect(0...0, keywords: [])
      return { _ in make() }
    }
  }

  /// `maxpool2d(k[,s])`, `avgpool2d(k[,s])` (the stride also as `stride=s`).
  static func poolEntry(_ name: String, _ kind: Pool2d.Kind) -> LayerEntry {
    LayerEntry(name: name) { arguments throws(ModelSpecificationError) in
      try arguments.expect(1...2, keywords: ["stride"])
      let kernel = try arguments.size(0, "kernel_size")
      let strideText = arguments.layer.positional.count > 1 ? arguments.layer.positional[1] : arguments.layer.keywords["stride"]
      let stride = try strideText.map { text throws(ModelSpecificationError) in try arguments.size(text, "stride") }
      return { _ in Pool2d(kind, kernelSize: kernel, stride: stride) }
    }
  }

  /// `batchnorm1d(n[,eps=e][,momentum=m|none])` and its 2-D twin.
  static func batchNormEntry(
    _ name: String, _ make: @escaping @Sendable (Int, Float, Float?) -> any Layer
  ) -> LayerEntry {
    LayerEntry(name: name) { arguments throws(ModelSpecificationError) in
      try arguments.expect(1...1, keywords: ["eps", "momentum"])
      let features = try arguments.size(0, "num_features")
      let epsilon = try arguments.positiveNumber("eps", default: 1e-5)
      var momentum: Float? = 0.1
      if let text = arguments.layer.keywords["momentum"] {
        if text.trimmingWhitespace.lowercased() == "none" {
          momentum = nil
        } else {
          guard let value = Float(text.trimmingWhitespace), value >= 0, value <= 1 else {
            throw arguments.fail("momentum must be a number in [0, 1] or none, got \"\(abbreviated(text))\"")
          }
          momentum = value
        }
      }
      return { [momentum] _ in make(features, epsilon, momentum) }
    }
  }
}

/// One layer's arguments as written, with the checks every layer shares.
struct LayerArguments {
  let layer: ModelSpecification.LayerSpecification
  let token: String
  let position: Int

  func fail(_ reason: String) -> ModelSpecificationError {
    .invalidArguments(layer: token, position: position, reason: reason)
  }

  /// Checks the number of positional arguments and the names of keyword ones.
  func expect(_ range: ClosedRange<Int>, keywords: Set<String>) throws(ModelSpecificationError) {
    guard range.contains(layer.positional.count) else {
      let counts = range.count == 1 ? "\(range.lowerBound)" : "\(range.lowerBound) to \(range.upperBound)"
      throw fail("expected \(counts) positional arguments, got \(layer.positional.count)")
    }
    for key in layer.keywords.keys.sorted() where !keywords.contains(key) {
      throw fail(
        "unknown argument \"\(abbreviated(key))\"\(keywords.isEmpty ? "" : "; expected \(keywords.sorted().joined(separator: ", "))")"
      )
    }
  }

  /// A positive size up to 2^30, from `text`.
  func size(_ text: String, _ what: String) throws(ModelSpecificationError) -> Int {
    guard let value = Int(text.trimmingWhitespace), value >= 1, value <= 1 << 30 else {
      throw fail("\(what) must be a positive integer, got \"\(abbreviated(text))\"")
    }
    return value
  }

  /// The positional argument at `index` as a size.
  func size(_ index: Int, _ what: String) throws(ModelSpecificationError) -> Int {
    try size(layer.positional[index], what)
  }

  /// The keyword argument `key` as a size, or `value` when it is not given.
  func size(keyword key: String, default value: Int) throws(ModelSpecificationError) -> Int {
    try size(layer.keywords[key] ?? "\(value)", key)
  }

  /// `padding=p`, a non-negative integer (0 by default).
  func padding() throws(ModelSpecificationError) -> Int {
    let text = layer.keywords["padding"] ?? "0"
    guard let padding = Int(text.trimmingWhitespace), padding >= 0, padding <= 1 << 20 else {
      throw fail("padding must be a non-negative integer, got \"\(abbreviated(text))\"")
    }
    return padding
  }

  func flag(_ key: String, default value: Bool) throws(ModelSpecificationError) -> Bool {
    guard let text = layer.keywords[key] else { return value }
    switch text.lowercased() {
    case "true", "1": return true
    case "false", "0": return false
    default: throw fail("\(key) must be true or false, got \"\(abbreviated(text))\"")
    }
  }

  func positiveNumber(_ key: String, default value: Float) throws(ModelSpecificationError) -> Float {
    guard let text = layer.keywords[key] else { return value }
    guard let number = Float(text.trimmingWhitespace), number > 0, number.isFinite else {
      throw fail("\(key) must be a positive number, got \"\(abbreviated(text))\"")
    }
    return number
  }

  /// Refuses a layer with more than ``ModelSpecification/maximumLayerParameters``
  /// parameters, before any shape arithmetic could overflow.
  func checkParameterCount(_ factors: Int...) throws(ModelSpecificationError) {
    var count = 1
    for factor in factors {
      let (product, overflow) = count.multipliedReportingOverflow(by: factor)
      guard !overflow, product <= ModelSpecification.maximumLayerParameters else {
        throw fail(
          "has more than \(ModelSpecification.maximumLayerParameters) parameters (2^40), more than any machine trains")
      }
      count = product
    }
  }
}

extension String {
  var trimmingWhitespace: String {
    String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
  }
}
