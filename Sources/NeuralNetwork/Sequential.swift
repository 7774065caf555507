import Tensors

/// Builds the layer list of a ``Sequential`` from statements.
@resultBuilder
public enum LayerBuilder {
  public static func buildExpression(_ layer: any Layer) -> [any Layer] { [layer] }
  public static func buildBlock(_ parts: [any Layer]...) -> [any Layer] { parts.flatMap { $0 } }
  public static func buildOptional(_ part: [any Layer]?) -> [any Layer] { part ?? [] }
  public static func buildEither(first part: [any Layer]) -> [any Layer] { part }
  public static func buildEither(second part: [any Layer]) -> [any Layer] { part }
  public static func buildArray(_ parts: [[any Layer]]) -> [any Layer] { parts.flatMap { $0 } }
}

/// Layers applied one after another, as PyTorch's `nn.Sequential`.
///
/// Parameters are named by position and the inner name, exactly as
/// `nn.Sequential.state_dict()`: `0.weight`, `0.bias`, `2.weight`, …
///
/// ```swift
/// let model = Sequential {
///   Linear(inputSize: 64, outputSize: 128); ReLU(); Linear(inputSize: 128, outputSize: 10)
/// }
/// ```
public final class Sequential: Layer {
  /// The layers, in order.
  public let layers: [any Layer]

  /// A model from a list of layers.
  public init(_ layers: [any Layer]) { self.layers = layers }

  /// A model from statements, one layer each.
  public convenience init(@LayerBuilder _ build: () -> [any Layer]) { self.init(build()) }

  public func callAsFunction(_ input: Tensor) -> Tensor {
    guard let trace = ShapeTracing.current else { return layers.reduce(input) { $1($0) } }
    // Under memory tracing, tag each buffer with the layer that made it.
    let outer = trace.currentLayer
    defer { trace.currentLayer = outer }
    var output = input
    for (index, layer) in layers.enumerated() {
      trace.currentLayer = index
      output = layer(output)
    }
    return output
  }

  public func outputShape(forInput shape: [Int]) throws(ShapeError) -> [Int] {
    var current = shape
    for layer in layers { current = try layer.outputShape(forInput: current) }
    return current
  }

  public var namedParameters: [(name: String, tensor: Tensor)] {
    layers.enumerated().flatMap { index, layer in
      layer.namedParameters.map { ("\(index).\($0.name)", $0.tensor) }
    }
  }

  public var namedBuffers: [(name: String, tensor: Tensor)] {
    layers.enumerated().flatMap { index, layer in
      layer.namedBuffers.map { ("\(index).\($0.name)", $0.tensor) }
    }
  }

  public var namedCounters: [(name: String, counter: Counter)] {
    layers.enumerated().flatMap { index, layer in
      layer.namedCounters.map { ("\(index).\($0.name)", $0.counter) }
    }
  }

  public func setTraining(_ training: Bool) {
    for layer in layers { layer.setTraining(training) }
  }

  public var dependsOnBatch: Bool { layers.contains { $0.dependsOnBatch } }

  public var randomStates: [UInt64] {
    get { layers.flatMap(\.randomStates) }
    set {
      var remaining = newValue[...]
      for layer in layers {
        let count = layer.randomStates.count
        layer.randomStates = Array(remaining.prefix(count))
        remaining = remaining.dropFirst(count)
      }
    }
  }
}
