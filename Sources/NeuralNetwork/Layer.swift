import Tensors

/// A differentiable function with parameters, the unit models are built from.
///
/// Layers are reference types: their parameters are tensors that the optimizer updates in
/// place, and a model shares them with whoever holds it. Parameter and buffer names are
/// those of the matching PyTorch module's `state_dict()` (`weight`, `bias`, `running_mean`).
public protocol Layer: AnyObject {
  /// Applies the layer to a batch (the first axis of `input` is the batch).
  func callAsFunction(_ input: Tensor) -> Tensor

  /// The shape of one sample's output for one sample's input shape (batch axis excluded).
  /// - Throws: ``ShapeError`` when the layer cannot take that input.
  func outputShape(forInput shape: [Int]) throws(ShapeError) -> [Int]

  /// Trainable tensors with their PyTorch names, in PyTorch's order.
  var namedParameters: [(name: String, tensor: Tensor)] { get }

  /// Non-trainable state saved with the model (running statistics), with PyTorch names.
  var namedBuffers: [(name: String, tensor: Tensor)] { get }

  /// Integer state saved with the model (BatchNorm's `num_batches_tracked`, an `I64`
  /// scalar in PyTorch's `state_dict`), with PyTorch names.
  var namedCounters: [(name: String, counter: Counter)] { get }

  /// Switches between training behaviour (dropout active, batch statistics) and evaluation.
  func setTraining(_ training: Bool)

  /// Whether the layer's output for one sample depends on the other samples of its batch
  /// (batch normalization): such layers see micro-batches, not windows, under accumulation.
  var dependsOnBatch: Bool { get }

  /// The states of the random generators the layer draws from (dropout masks), in order;
  /// setting them resumes the streams exactly.
  var randomStates: [UInt64] { get set }
}

extension Layer {
  public var namedParameters: [(name: String, tensor: Tensor)] { [] }
  public var namedBuffers: [(name: String, tensor: Tensor)] { [] }
  public var namedCounters: [(name: String, counter: Counter)] { [] }
  public func setTraining(_ training: Bool) {}
  public var dependsOnBatch: Bool { false }
  public var randomStates: [UInt64] {
    get { [] }
    set {}
  }

  /// The trainable tensors, in order.
  public var parameters: [Tensor] { namedParameters.map(\.tensor) }

  /// Every tensor of the model's `state_dict`, parameters then buffers.
  public var namedState: [(name: String, tensor: Tensor)] { namedParameters + namedBuffers }

  /// Number of trainable scalars.
  public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

  /// Zeros the accumulated gradient of every parameter.
  public func zeroGradients() {
    for parameter in parameters { parameter.zeroGradient() }
  }
}

/// An integer a layer keeps as state and saves with its tensors (PyTorch stores it as an
/// `I64` tensor of shape `[]`). A reference, like a tensor, so loading writes into it.
public final class Counter {
  /// The current count.
  public var value: Int64

  public init(_ value: Int64 = 0) { self.value = value }
}

/// What running a layer changes besides its parameters, saved to be put back: its buffers
/// (running statistics), counters and random generators. Under shape tracing the saved
/// buffers are zeros of the same count, so that saving costs the bytes it costs for real.
public struct LayerRunningState {
  let layer: any Layer
  let buffers: [(Tensor, [Float])]
  let counters: [(Counter, Int64)]
  /// The random generators' states saved.
  public let randomStates: [UInt64]

  public init(of layer: any Layer) {
    self.layer = layer
    buffers = layer.namedBuffers.map {
      ($0.tensor, $0.tensor.hasElements ? $0.tensor.values : [Float](repeating: 0, count: $0.tensor.count))
    }
    counters = layer.namedCounters.map { ($0.counter, $0.counter.value) }
    randomStates = layer.randomStates
  }

  /// Puts the layer's buffers, counters and random generators back as they were saved.
  public func restore() {
    for (tensor, values) in buffers where tensor.hasElements { tensor.mutableBuffer.update(fromContentsOf: values) }
    for (counter, value) in counters { counter.value = value }
    layer.randomStates = randomStates
  }
}

/// Why a layer or a loss cannot take the shapes it was given.
public enum ShapeError: Error, Equatable, Sendable, CustomStringConvertible {
  /// `layer` expects `expected` features per sample but was given `actual`.
  case featureMismatch(layer: String, expected: Int, actual: [Int])
  /// `layer` needs inputs of a given rank (per sample).
  case rankMismatch(layer: String, expectedRank: Int, actual: [Int])
  /// A loss was given predictions and targets that do not match.
  case targetMismatch(loss: String, predicted: [Int], targets: [Int])
  /// A convolution or pooling window does not fit the input.
  case windowTooLarge(layer: String, actual: [Int])
  /// A sequence longer than a positional table.
  case sequenceTooLong(layer: String, length: Int, maxLength: Int)

  public var description: String {
    switch self {
    case .featureMismatch(let layer, let expected, let actual):
      "\(layer) expects \(expected) input features per sample, got input shape \(actual)"
    case .rankMismatch(let layer, let expectedRank, let actual):
      "\(layer) expects a rank-\(expectedRank) input per sample, got shape \(actual)"
    case .targetMismatch(let loss, let predicted, let targets):
      "\(loss) cannot compare predictions of shape \(predicted) with targets of shape \(targets)"
    case .windowTooLarge(let layer, let actual):
      "\(layer): its window does not fit an input of shape \(actual)"
    case .sequenceTooLong(let layer, let length, let maxLength):
      "\(layer) holds positions for sequences of up to \(maxLength) tokens, got \(length)"
    }
  }
}
