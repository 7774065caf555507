import NeuralNetwork
import Tensors

extension Layer {
  /// Replaces the model's parameters and buffers with the tensors of `file`, by name.
  ///
  /// Every model tensor must be in the file, `F32`, with the model's shape; a file tensor
  /// the model does not have is an error, except `I64` tensors such as BatchNorm's
  /// `num_batches_tracked`, which are skipped when the model has no place for them.
  /// Nothing is changed unless the whole file fits.
  /// - Throws: ``CheckpointError`` naming the tensor and what was expected.
  public func loadState(from file: SafetensorsFile) throws(CheckpointError) {
    let state = namedState
    let modelNames = Set(state.map(\.name))
    for name in file.names where !modelNames.contains(name) {
      guard file.entries[name]?.dtype == .i64 else {
        throw .unexpectedTensor(path: file.path, tensor: name, expected: state.map(\.name))
      }
    }
    var loaded: [(Tensor, Tensor)] = []
    for (name, tensor) in state {
      guard let entry = file.entries[name] else { throw .missingTensor(path: file.path, tensor: name) }
      guard entry.shape == tensor.shape else {
        throw .shapeMismatch(path: file.path, tensor: name, fileShape: entry.shape, modelShape: tensor.shape)
      }
      loaded.append((tensor, try file.floatTensor(name)))
    }
    for (target, source) in loaded {
      target.mutableBuffer.update(fromContentsOf: source.buffer)
    }
  }

  /// Loads the safetensors file at `path` into the model (see ``loadState(from:)``).
  public func loadState(path: String) throws(CheckpointError) {
    try loadState(from: SafetensorsFile.read(path: path))
  }

  /// Writes the model's parameters and buffers to a safetensors file at `path`, atomically,
  /// with PyTorch's names and layouts.
  public func saveState(path: String, metadata: [String: String] = [:]) throws(CheckpointError) {
    try AtomicFile.write(SafetensorsFile.encode(floats: namedState, metadata: metadata), to: path)
  }
}
