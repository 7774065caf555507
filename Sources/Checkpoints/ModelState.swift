import NeuralNetwork
import Tensors

extension Layer {
  /// Replaces the model's parameters, buffers and counters with the tensors of `file`, by
  /// name, as PyTorch's strict `load_state_dict`.
  ///
  /// Every model tensor must be in the file, `F32`, with the model's shape; every counter
  /// (BatchNorm's `num_batches_tracked`) an `I64` scalar; a file tensor the model does not
  /// have is an error. Nothing is changed unless the whole file fits.
  ///
  /// A training checkpoint (metadata `format` = `gradaccum`) is read too: its model tensors
  /// (`model.<name>`) are the weights, and its optimizer state and gradients are ignored.
  /// - Throws: ``CheckpointError`` naming the tensor and what was expected.
  public func loadState(from file: SafetensorsFile) throws(CheckpointError) {
    let state = namedState, counters = namedCounters
    let modelNames = state.map(\.name) + counters.map(\.name)
    let known = Set(modelNames)
    let prefix = file.metadata["format"] == "gradaccum" ? "model." : ""
    for fileName in file.names where fileName.hasPrefix(prefix) {
      let name = String(fileName.dropFirst(prefix.count))
      if !known.contains(name) { throw .unexpectedTensor(path: file.path, tensor: fileName, expected: modelNames) }
    }
    var loaded: [(Tensor, Tensor)] = []
    for (name, tensor) in state {
      guard let entry = file.entries[prefix + name] else { throw .missingTensor(path: file.path, tensor: prefix + name) }
      guard entry.shape == tensor.shape else {
        throw .shapeMismatch(path: file.path, tensor: prefix + name, fileShape: entry.shape, modelShape: tensor.shape)
      }
      loaded.append((tensor, try file.floatTensor(prefix + name)))
    }
    var counts: [(Counter, Int64)] = []
    for (name, counter) in counters {
      guard let entry = file.entries[prefix + name] else {
        throw .missingTensor(path: file.path, tensor: prefix + name)
      }
      guard entry.shape.reduce(1, *) == 1 else {
        throw .shapeMismatch(path: file.path, tensor: prefix + name, fileShape: entry.shape, modelShape: [])
      }
      counts.append((counter, try file.integerValues(prefix + name)[0]))
    }
    for (target, source) in loaded {
      target.assign(from: source)
    }
    for (counter, value) in counts { counter.value = value }
  }

  /// Loads the safetensors file at `path` into the model (see ``loadState(from:)``).
  public func loadState(path: String) throws(CheckpointError) {
    try loadState(from: SafetensorsFile.read(path: path))
  }

  /// Writes the model's parameters, buffers and counters to a safetensors file at `path`, atomically,
  /// with PyTorch's names and layouts.
  public func saveState(path: String, metadata: [String: String] = [:]) throws(CheckpointError) {
    try AtomicFile.write(
      SafetensorsFile.encode(floats: namedState, integers: integerState, metadata: metadata), to: path)
  }

  /// The model's counters as `I64` scalars (shape `[]`), as PyTorch saves them.
  public var integerState: [(name: String, values: [Int64], shape: [Int])] {
    namedCounters.map { ($0.name, [$0.counter.value], []) }
  }
}
