import Checkpoints
import Foundation
import NeuralNetwork
import Tensors
import Testing
import _TestSupport

/// A file's bytes from a header text and a data section.
func fileBytes(header: String, data: [UInt8]) -> [UInt8] {
  let headerBytes = Array(header.utf8)
  var bytes: [UInt8] = []
  withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { bytes.append(contentsOf: $0) }
  return bytes + headerBytes + data
}

func floatBytes(_ values: [Float]) -> [UInt8] {
  values.flatMap { value in withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) } }
}

func temporaryPath(_ name: String) -> String {
  FileManager.default.temporaryDirectory.appendingPathComponent("gradaccum-\(getpid())-\(name)").path
}

@Suite("safetensors")
struct SafetensorsTests {
  @Test func readsAFileLaidOutAsPyTorchWritesIt() throws {
    // As safetensors.torch.save_file writes a Linear(2,1) state_dict plus a BatchNorm counter.
    let header = """
      {"0.bias":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"0.weight":{"dtype":"F32","shape":[1,2],"data_offsets":[4,12]},\
      "1.num_batches_tracked":{"dtype":"I64","shape":[],"data_offsets":[12,20]},"__metadata__":{"format":"pt"}}
      """
    var data = floatBytes([0.5, 1.5, -2.25])
    withUnsafeBytes(of: Int64(7).littleEndian) { data.append(contentsOf: $0) }
    let file = try SafetensorsFile.parse(fileBytes(header: header, data: data), path: "m.safetensors")
    #expect(file.metadata == ["format": "pt"])
    #expect(file.names == ["0.bias", "0.weight", "1.num_batches_tracked"])
    #expect(try file.floatTensor("0.weight").values == [1.5, -2.25])
    #expect(try file.floatTensor("0.weight").shape == [1, 2])
    #expect(try file.integerValues("1.num_batches_tracked") == [7])
    // A counter the model has no place for is refused, as PyTorch's strict loading does.
    let model = Sequential { Linear(inputSize: 2, outputSize: 1, seed: 0) }
    #expect(
      throws: CheckpointError.unexpectedTensor(
        path: "m.safetensors", tensor: "1.num_batches_tracked", expected: ["0.weight", "0.bias"])
    ) { try model.loadState(from: file) }
  }

  @Test func roundTripsThroughEncodeAndAFile() throws {
    let model = Sequential {
      Linear(inputSize: 3, outputSize: 4, seed: 1); ReLU(); Linear(inputSize: 4, outputSize: 2, seed: 2)
    }
    let path = temporaryPath("roundtrip.safetensors")
    defer { try? FileManager.default.removeItem(atPath: path) }
    try model.saveState(path: path, metadata: ["format": "pt"])
    let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    let headerLength = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
    #expect(headerLength % 8 == 0)
    let copy = Sequential {
      Linear(inputSize: 3, outputSize: 4, seed: 7); ReLU(); Linear(inputSize: 4, outputSize: 2, seed: 8)
    }
    try copy.loadState(path: path)
    #expect(copy.parameters.map(\.values) == model.parameters.map(\.values))
    #expect(try SafetensorsFile.read(path: path).metadata == ["format": "pt"])
  }

  @Test func writesAreAtomic() throws {
    let path = temporaryPath("atomic.safetensors")
    defer { try? FileManager.default.removeItem(atPath: path) }
    try AtomicFile.write([1, 2, 3], to: path)
    try AtomicFile.write([4, 5], to: path)
    #expect([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) == [4, 5])
    let leftovers = try FileManager.default.contentsOfDirectory(atPath: FileManager.default.temporaryDirectory.path)
      .filter { $0.hasPrefix("gradaccum-\(getpid())-atomic.safetensors.partial") }
    #expect(leftovers.isEmpty)
    #expect(throws: CheckpointError.self) { try AtomicFile.write([1], to: "/nonexistent-directory/x.safetensors") }
  }

  static let good = #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#

  @Test(arguments: [
    ([UInt8](), "truncated: 0 bytes"),
    ([1, 2, 3], "truncated: 3 bytes"),
    (fileBytes(header: good, data: []), "data_offsets [0, 8] lie outside the 0-byte data section"),
    ([255, 255, 255, 255, 255, 0, 0, 0] + Array("{}".utf8), "claims a 1099511627775-byte header"),
    (fileBytes(header: "{not json", data: []), "the JSON does not parse"),
    (fileBytes(header: "[1,2]", data: []), "the JSON is not an object"),
    (
      fileBytes(header: #"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: floatBytes([1, 2])),
      "8 bytes of data do not hold a F32 tensor of shape [3]"
    ),
    (
      fileBytes(header: #"{"w":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}}"#, data: floatBytes([1, 2])),
      "dtype Q7 is not supported"
    ),
    (
      fileBytes(header: #"{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, data: floatBytes([1, 2])),
      "\"shape\" must be a list of non-negative integers"
    ),
    (
      fileBytes(header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8]}}"#, data: floatBytes([1, 2])),
      "\"data_offsets\" must be two integers"
    ),
    (
      fileBytes(header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, data: floatBytes([1, 2])),
      "lie outside"
    ),
    (fileBytes(header: #"{"w":{"shape":[2],"data_offsets":[0,8]}}"#, data: floatBytes([1, 2])), "missing \"dtype\""),
    (
      fileBytes(
        header: #"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#,
        data: floatBytes([1, 2])), "do not hold"
    ),
    (fileBytes(header: #"{"__metadata__":{"a":1}}"#, data: []), "__metadata__ must map strings to strings"),
    (
      fileBytes(
        header: #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
        data: floatBytes([1, 2])), "tensor \"w\": the name appears twice"
    ),
    (
      // The same name, once escaped: equal after decoding.
      fileBytes(
        header: #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"\u0077":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
        data: floatBytes([1, 2])), "appears twice"
    ),
  ])
  func rejectsMalformedFiles(bytes: [UInt8], message: String) {
    do {
      _ = try SafetensorsFile.parse(bytes, path: "bad.safetensors")
      Issue.record("parsed; expected an error containing \(message)")
    } catch {
      #expect(error.description.contains(message), "\(error.description)")
      #expect(error.description.contains("bad.safetensors"))
    }
  }

  @Test func batchNormStateRoundTripsWithItsCounterAsI64() throws {
    let spec = try ModelSpecification(parsing: "linear(3,4) batchnorm1d(4) relu linear(4,2)")
    let model = spec.build(seed: 1)
    for _ in 0..<3 { _ = model(randomTensor([5, 3], seed: 2)) }
    let path = temporaryPath("batchnorm.safetensors")
    defer { try? FileManager.default.removeItem(atPath: path) }
    try model.saveState(path: path)
    let file = try SafetensorsFile.read(path: path)
    #expect(file.entries["1.num_batches_tracked"]?.dtype == .i64)
    #expect(file.entries["1.num_batches_tracked"]?.shape == [])
    #expect(try file.integerValues("1.num_batches_tracked") == [3])
    let copy = spec.build(seed: 9)
    try copy.loadState(path: path)
    #expect(copy.namedState.map(\.tensor.values) == model.namedState.map(\.tensor.values))
    #expect(copy.namedCounters.map(\.counter.value) == [3])
    // Without the counter the file does not fit the model.
    let floatsOnly = try SafetensorsFile.parse(SafetensorsFile.encode(floats: model.namedState), path: "f.safetensors")
    #expect(throws: CheckpointError.missingTensor(path: "f.safetensors", tensor: "1.num_batches_tracked")) {
      try copy.loadState(from: floatsOnly)
    }
  }

  @Test func loadingChecksNamesShapesAndTypes() throws {
    let model = Sequential { Linear(inputSize: 2, outputSize: 1, seed: 0) }
    let before = model.parameters.map(\.values)
    func file(_ floats: [(String, Tensor)], integers: [(name: String, values: [Int64], shape: [Int])] = []) throws
      -> SafetensorsFile
    {
      try SafetensorsFile.parse(SafetensorsFile.encode(floats: floats, integers: integers), path: "m.safetensors")
    }
    let weight = Tensor([1, 2], shape: [1, 2]), bias = Tensor([3], shape: [1])
    #expect(throws: CheckpointError.missingTensor(path: "m.safetensors", tensor: "0.bias")) {
      try model.loadState(from: file([("0.weight", weight)]))
    }
    #expect(
      throws: CheckpointError.unexpectedTensor(
        path: "m.safetensors", tensor: "1.weight", expected: ["0.weight", "0.bias"])
    ) {
      try model.loadState(from: file([("0.weight", weight), ("0.bias", bias), ("1.weight", bias)]))
    }
    #expect(
      throws: CheckpointError.shapeMismatch(
        path: "m.safetensors", tensor: "0.weight", fileShape: [2, 1], modelShape: [1, 2])
    ) {
      try model.loadState(from: file([("0.weight", weight.reshaped(to: [2, 1])), ("0.bias", bias)]))
    }
    #expect(
      throws: CheckpointError.unsupportedDType(path: "m.safetensors", tensor: "0.bias", dtype: "I64", expected: "F32")
    ) {
      try model.loadState(from: file([("0.weight", weight)], integers: [(name: "0.bias", values: [3], shape: [1])]))
    }
    // Nothing was changed by the failed loads.
    #expect(model.parameters.map(\.values) == before)
    #expect(throws: CheckpointError.fileNotReadable(path: "/nonexistent.safetensors", reason: "no such file")) {
      try model.loadState(path: "/nonexistent.safetensors")
    }
  }
}
