/// Why a safetensors file cannot be read, written or loaded into a model.
public enum CheckpointError: Error, Equatable, Sendable, CustomStringConvertible {
  case fileNotReadable(path: String, reason: String)
  case fileNotWritable(path: String, reason: String)
  case truncated(path: String, byteCount: Int, expected: String)
  case headerTooLong(path: String, headerBytes: UInt64, fileBytes: Int)
  case headerNotJSON(path: String, reason: String)
  case malformedEntry(path: String, tensor: String, reason: String)
  case dataOutOfRange(path: String, tensor: String, range: [Int], dataBytes: Int)
  case byteCountMismatch(path: String, tensor: String, dtype: String, shape: [Int], bytes: Int)
  case unsupportedDType(path: String, tensor: String, dtype: String, expected: String)
  case missingTensor(path: String, tensor: String)
  case unexpectedTensor(path: String, tensor: String, expected: [String])
  case shapeMismatch(path: String, tensor: String, fileShape: [Int], modelShape: [Int])

  public var description: String {
    switch self {
    case .fileNotReadable(let path, let reason):
      "cannot read safetensors file \(path): \(reason)"
    case .fileNotWritable(let path, let reason):
      "cannot write safetensors file \(path): \(reason)"
    case .truncated(let path, let byteCount, let expected):
      "safetensors file \(path) is truncated: \(byteCount) bytes, expected \(expected)"
    case .headerTooLong(let path, let headerBytes, let fileBytes):
      "safetensors file \(path) claims a \(headerBytes)-byte header but the file has only \(fileBytes) bytes"
    case .headerNotJSON(let path, let reason):
      "safetensors file \(path) has a header that is not a JSON object of tensors: \(reason)"
    case .malformedEntry(let path, let tensor, let reason):
      "safetensors file \(path), tensor \"\(tensor)\": \(reason)"
    case .dataOutOfRange(let path, let tensor, let range, let dataBytes):
      "safetensors file \(path), tensor \"\(tensor)\": data_offsets \(range) lie outside the \(dataBytes)-byte data section"
    case .byteCountMismatch(let path, let tensor, let dtype, let shape, let bytes):
      "safetensors file \(path), tensor \"\(tensor)\": \(bytes) bytes of data do not hold a \(dtype) tensor of shape \(shape)"
    case .unsupportedDType(let path, let tensor, let dtype, let expected):
      "safetensors file \(path), tensor \"\(tensor)\": dtype \(dtype) is not supported here, expected \(expected)"
    case .missingTensor(let path, let tensor):
      "safetensors file \(path) has no tensor \"\(tensor)\", which the model needs"
    case .unexpectedTensor(let path, let tensor, let expected):
      "safetensors file \(path) has tensor \"\(tensor)\", which the model does not have; the model's tensors are \(expected.joined(separator: ", "))"
    case .shapeMismatch(let path, let tensor, let fileShape, let modelShape):
      "safetensors file \(path), tensor \"\(tensor)\": shape \(fileShape) in the file, but the model needs \(modelShape)"
    }
  }
}
