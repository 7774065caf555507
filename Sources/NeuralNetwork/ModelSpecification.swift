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

  /// Layer names this parser knows.
  public static let knownLayers = [
    "linear", "conv2d", "maxpool2d", "avgpool2d", "adaptiveavgpool2d", "batchnorm1d", "batchnorm2d", "layernorm",
    "relu", "tanh", "sigmoid", "gelu",
    "flatten", "dropout",
  ]

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
      guard Self.knownLayers.contains(name) else {
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
      try Self.check(layer, token: token, position: position)
      layers.append(layer)
    }
    self.layers = layers
  }

  /// Checks argument counts, types and ranges without building anything.
  static func check(_ layer: LayerSpecification, token: String, position: Int) throws(ModelSpecificationError) {
    var generator = RandomGenerator(seed: 0)
    _ = try build(layer, token: token, position: position, generator: &generator, allocate: false)
  }

  /// The model, with parameters initialized from `seed`.
  public func build(seed: UInt64) -> Sequential {
    var generator = RandomGenerator(seed: seed)
    // Every layer was checked at parse time, so building cannot fail.
    let built = layers.enumerated().map { position, layer in
      try! Self.build(layer, token: layer.name, position: position, generator: &generator, allocate: true)!
    }
    return Sequential(built)
  }

  static func build(
    _ layer: LayerSpecification, token: String, position: Int, generator: inout RandomGenerator, allocate: Bool
  ) throws(ModelSpecificationError) -> (any Layer)? {
    func fail(_ reason: String) -> ModelSpecificationError {
      .invalidArguments(layer: token, position: position, reason: reason)
    }
    func expectArguments(_ range: ClosedRange<Int>, allowed keywords: Set<String>) throws(ModelSpecificationError) {
      guard range.contains(layer.positional.count) else {
        let counts = range.count == 1 ? "\(range.lowerBound)" : "\(range.lowerBound) to \(range.upperBound)"
        throw fail("expected \(counts) positional arguments, got \(layer.positional.count)")
      }
      for key in layer.keywords.keys where !keywords.contains(key) {
        throw fail(
          "unknown argument \"\(key)\"\(keywords.isEmpty ? "" : "; expected \(keywords.sorted().joined(separator: ", "))")"
        )
      }
    }
    func size(_ text: String, _ what: String) throws(ModelSpecificationError) -> Int {
      guard let value = Int(text.trimmingWhitespace), value >= 1, value <= 1 << 30 else {
        throw fail("\(what) must be a positive integer, got \"\(text)\"")
      }
      return value
    }
    func flag(_ key: String, default value: Bool) throws(ModelSpecificationError) -> Bool {
      guard let text = layer.keywords[key] else { return value }
      switch text.lowercased() {
      case "true", "1": return true
      case "false", "0": return false
      default: throw fail("\(key) must be true or false, got \"\(text)\"")
      }
    }
    /// Refuses a layer with more than 2^40 parameters (4 TiB of floats), before any shape
    /// arithmetic could overflow.
    func checkParameterCount(_ factors: Int...) throws(ModelSpecificationError) {
      var count = 1
      for factor in factors {
        let (product, overflow) = count.multipliedReportingOverflow(by: factor)
        guard !overflow, product <= Self.maximumLayerParameters else {
          throw fail("has more than \(Self.maximumLayerParameters) parameters (2^40), more than any machine trains")
        }
        count = product
      }
    }
    func positiveNumber(_ key: String, default value: Float) throws(ModelSpecificationError) -> Float {
      guard let text = layer.keywords[key] else { return value }
      guard let number = Float(text.trimmingWhitespace), number > 0, number.isFinite else {
        throw fail("\(key) must be a positive number, got \"\(text)\"")
      }
      return number
    }
    switch layer.name {
    case "linear":
      try expectArguments(2...2, allowed: ["bias"])
      let input = try size(layer.positional[0], "in_features")
      let output = try size(layer.positional[1], "out_features")
      let bias = try flag("bias", default: true)
      try checkParameterCount(input, output)
      return allocate ? Linear(inputSize: input, outputSize: output, bias: bias, generator: &generator) : nil
    case "conv2d":
      try expectArguments(3...3, allowed: ["stride", "padding", "dilation", "bias"])
      let input = try size(layer.positional[0], "in_channels")
      let output = try size(layer.positional[1], "out_channels")
      let kernel = try size(layer.positional[2], "kernel_size")
      let stride = try size(layer.keywords["stride"] ?? "1", "stride")
      let dilation = try size(layer.keywords["dilation"] ?? "1", "dilation")
      guard let padding = Int((layer.keywords["padding"] ?? "0").trimmingWhitespace), padding >= 0, padding <= 1 << 20
      else {
        throw fail("padding must be a non-negative integer, got \"\(layer.keywords["padding"] ?? "")\"")
      }
      let bias = try flag("bias", default: true)
      try checkParameterCount(input, output, kernel, kernel)
      return allocate
        ? Conv2d(
          inputChannels: input, outputChannels: output, kernelSize: kernel, stride: stride, padding: padding,
          dilation: dilation, bias: bias, generator: &generator) : nil
    case "maxpool2d", "avgpool2d":
      try expectArguments(1...2, allowed: ["stride"])
      let kernel = try size(layer.positional[0], "kernel_size")
      let strideText = layer.positional.count > 1 ? layer.positional[1] : layer.keywords["stride"]
      let stride = try strideText.map { text throws(ModelSpecificationError) in try size(text, "stride") }
      return allocate
        ? Pool2d(layer.name == "maxpool2d" ? .maximum : .average, kernelSize: kernel, stride: stride) : nil
    case "layernorm":
      try expectArguments(1...1, allowed: ["eps"])
      let size = try size(layer.positional[0], "normalized_shape")
      let epsilon = try positiveNumber("eps", default: 1e-5)
      return allocate ? LayerNorm(size: size, epsilon: epsilon) : nil
    case "batchnorm1d", "batchnorm2d":
      try expectArguments(1...1, allowed: ["eps", "momentum"])
      let features = try size(layer.positional[0], "num_features")
      let epsilon = try positiveNumber("eps", default: 1e-5)
      var momentum: Float? = 0.1
      if let text = layer.keywords["momentum"] {
        if text.trimmingWhitespace.lowercased() == "none" {
          momentum = nil
        } else {
          guard let value = Float(text.trimmingWhitespace), value >= 0, value <= 1 else {
            throw fail("momentum must be a number in [0, 1] or none, got \"\(text)\"")
          }
          momentum = value
        }
      }
      guard allocate else { return nil }
      return layer.name == "batchnorm1d"
        ? BatchNorm1d(features: features, epsilon: epsilon, momentum: momentum)
        : BatchNorm2d(features: features, epsilon: epsilon, momentum: momentum)
    case "adaptiveavgpool2d":
      try expectArguments(1...2, allowed: [])
      let height = try size(layer.positional[0], "output_size")
      let width = layer.positional.count > 1 ? try size(layer.positional[1], "output_size") : height
      guard allocate else { return nil }
      return height == 1 && width == 1
        ? GlobalAveragePool2d() : AdaptiveAvgPool2d(outputHeight: height, outputWidth: width)
    case "dropout":
      try expectArguments(0...1, allowed: ["p"])
      let text = layer.positional.first ?? layer.keywords["p"] ?? "0.5"
      guard let probability = Float(text.trimmingWhitespace), probability >= 0, probability < 1 else {
        throw fail("p must be a probability in [0, 1), got \"\(text)\"")
      }
      return allocate ? Dropout(probability: probability, seed: generator.next()) : nil
    default:
      try expectArguments(0...0, allowed: [])
      guard allocate else { return nil }
      switch layer.name {
      case "relu": return ReLU()
      case "tanh": return Tanh()
      case "sigmoid": return Sigmoid()
      case "gelu": return GELU()
      default: return Flatten()
      }
    }
  }
}

extension String {
  var trimmingWhitespace: String {
    String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
  }
}
