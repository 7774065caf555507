import Foundation
import Memory
import Tensors

/// A safetensors file in memory: an 8-byte little-endian header length, a JSON header
/// mapping tensor names to `dtype`, `shape` and `data_offsets` (plus optional
/// `__metadata__` of strings), then the raw little-endian data.
///
/// Files written by PyTorch (`safetensors.torch.save_file(model.state_dict())`) read here,
/// and files written here load in PyTorch.
public struct SafetensorsFile: Sendable {
  /// Element types of the format.
  public enum DType: String, Sendable, CaseIterable {
    case bool = "BOOL", u8 = "U8", i8 = "I8", i16 = "I16", u16 = "U16", f16 = "F16", bf16 = "BF16"
    case i32 = "I32", u32 = "U32", f32 = "F32", f64 = "F64", i64 = "I64", u64 = "U64"

    /// Bytes per element.
    public var elementBytes: Int {
      switch self {
      case .bool, .u8, .i8: 1
      case .i16, .u16, .f16, .bf16: 2
      case .i32, .u32, .f32: 4
      case .f64, .i64, .u64: 8
      }
    }
  }

  /// One tensor's header entry.
  public struct Entry: Sendable, Equatable {
    /// The tensor's name.
    public let name: String
    /// Its element type.
    public let dtype: DType
    /// Its shape.
    public let shape: [Int]
    /// Byte range within the data section.
    public let dataRange: Range<Int>
  }

  /// Where the file came from, for messages.
  public let path: String
  /// The `__metadata__` strings.
  public let metadata: [String: String]
  /// The tensors by name.
  public let entries: [String: Entry]
  /// The data section.
  let data: [UInt8]

  /// Names of the tensors, sorted.
  public var names: [String] { entries.keys.sorted() }

  /// Reads and validates the file at `path`.
  /// - Throws: ``CheckpointError`` for a missing, truncated or malformed file.
  public static func read(path: String) throws(CheckpointError) -> SafetensorsFile {
    if let problem = MachineMemory.wholeFileProblem(path: path, copies: 8) {
      throw .fileNotReadable(path: path, reason: problem)
    }
    guard let handle = FileHandle(forReadingAtPath: path) else {
      let reason = FileManager.default.fileExists(atPath: path) ? "permission denied or not a file" : "no such file"
      throw .fileNotReadable(path: path, reason: reason)
    }
    defer { try? handle.close() }
    let bytes: Data
    do {
      bytes = try handle.readToEnd() ?? Data()
    } catch {
      throw .fileNotReadable(path: path, reason: "\(error.localizedDescription)")
    }
    return try parse([UInt8](bytes), path: path)
  }

  /// Parses the bytes of a safetensors file; `path` names it in errors.
  public static func parse(_ bytes: [UInt8], path: String) throws(CheckpointError) -> SafetensorsFile {
    guard bytes.count >= 8 else {
      throw .truncated(path: path, byteCount: bytes.count, expected: "at least 8 bytes of header length")
    }
    var headerLength: UInt64 = 0
    for i in 0..<8 { headerLength |= UInt64(bytes[i]) << (8 * UInt64(i)) }
    guard headerLength <= UInt64(bytes.count - 8) else {
      throw .headerTooLong(path: path, headerBytes: headerLength, fileBytes: bytes.count)
    }
    let headerEnd = 8 + Int(headerLength)
    let object: Any
    do {
      object = try JSONSerialization.jsonObject(with: Data(bytes[8..<headerEnd]))
    } catch {
      throw .headerNotJSON(path: path, reason: "the JSON does not parse")
    }
    guard let header = object as? [String: Any] else {
      throw .headerNotJSON(path: path, reason: "the JSON is not an object")
    }
    // JSONSerialization keeps one of two equal keys silently; the format has no such file.
    if let duplicate = duplicateTopLevelKey(bytes[8..<headerEnd]) {
      throw .malformedEntry(path: path, tensor: duplicate, reason: "the name appears twice in the header")
    }
    let data = Array(bytes[headerEnd...])
    var metadata: [String: String] = [:]
    var entries: [String: Entry] = [:]
    for (name, value) in header {
      if name == "__metadata__" {
        guard let strings = value as? [String: String] else {
          throw .headerNotJSON(path: path, reason: "__metadata__ must map strings to strings")
        }
        metadata = strings
        continue
      }
      entries[name] = try entry(name: name, value: value, dataBytes: data.count, path: path)
    }
    return SafetensorsFile(path: path, metadata: metadata, entries: entries, data: data)
  }

  static func entry(name: String, value: Any, dataBytes: Int, path: String) throws(CheckpointError) -> Entry {
    guard let fields = value as? [String: Any] else {
      throw .malformedEntry(path: path, tensor: name, reason: "the entry is not an object")
    }
    guard let dtypeName = fields["dtype"] as? String else {
      throw .malformedEntry(path: path, tensor: name, reason: "missing \"dtype\" string")
    }
    guard let dtype = DType(rawValue: dtypeName) else {
      throw .unsupportedDType(
        path: path, tensor: name, dtype: dtypeName,
        expected: "one of \(DType.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    guard let shape = integers(fields["shape"]), shape.allSatisfy({ $0 >= 0 }) else {
      throw .malformedEntry(path: path, tensor: name, reason: "\"shape\" must be a list of non-negative integers")
    }
    guard let offsets = integers(fields["data_offsets"]), offsets.count == 2 else {
      throw .malformedEntry(path: path, tensor: name, reason: "\"data_offsets\" must be two integers [begin, end]")
    }
    guard offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= dataBytes else {
      throw .dataOutOfRange(path: path, tensor: name, range: offsets, dataBytes: dataBytes)
    }
    var elements = 1
    for extent in shape {
      let (product, overflow) = elements.multipliedReportingOverflow(by: extent)
      guard !overflow else {
        throw .byteCountMismatch(
          path: path, tensor: name, dtype: dtypeName, shape: shape, bytes: offsets[1] - offsets[0])
      }
      elements = product
    }
    let (expectedBytes, overflow) = elements.multipliedReportingOverflow(by: dtype.elementBytes)
    guard !overflow, expectedBytes == offsets[1] - offsets[0] else {
      throw .byteCountMismatch(path: path, tensor: name, dtype: dtypeName, shape: shape, bytes: offsets[1] - offsets[0])
    }
    return Entry(name: name, dtype: dtype, shape: shape, dataRange: offsets[0]..<offsets[1])
  }

  /// The first key that appears twice in the top-level object of the JSON `text` (which
  /// parses), compared after decoding escapes; `nil` when none does.
  static func duplicateTopLevelKey(_ text: ArraySlice<UInt8>) -> String? {
    var seen: Set<String> = []
    var depth = 0
    var expectingKey = false
    var index = text.startIndex
    while index < text.endIndex {
      let byte = text[index]
      switch byte {
      case UInt8(ascii: "{"), UInt8(ascii: "["):
        depth += 1
        expectingKey = depth == 1 && byte == UInt8(ascii: "{")
      case UInt8(ascii: "}"), UInt8(ascii: "]"):
        depth -= 1
      case UInt8(ascii: ","):
        expectingKey = depth == 1
      case UInt8(ascii: "\""):
        // Find the closing quote, skipping escaped characters.
        var end = index + 1
        while end < text.endIndex && text[end] != UInt8(ascii: "\"") {
          end += text[end] == UInt8(ascii: "\\") ? 2 : 1
        }
        if expectingKey, end < text.endIndex,
          let key = try? JSONSerialization.jsonObject(with: Data(text[index...end]), options: .fragmentsAllowed)
            as? String
        {
          if !seen.insert(key).inserted { return key }
          expectingKey = false
        }
        index = end
      default:
        break
      }
      index += 1
    }
    return nil
  }

  /// Integers from a JSON array, or `nil` when it is not an array of integers.
  static func integers(_ value: Any?) -> [Int]? {
    guard let array = value as? [Any] else { return nil }
    var result: [Int] = []
    for element in array {
      guard let number = element as? NSNumber else { return nil }
      let double = number.doubleValue
      guard double.rounded() == double, abs(double) < 9e15 else { return nil }
      result.append(number.intValue)
    }
    return result
  }

  /// The `F32` tensor `name`.
  /// - Throws: ``CheckpointError/missingTensor(path:tensor:)`` or
  ///   ``CheckpointError/unsupportedDType(path:tensor:dtype:expected:)``.
  public func floatTensor(_ name: String) throws(CheckpointError) -> Tensor {
    guard let entry = entries[name] else { throw .missingTensor(path: path, tensor: name) }
    guard entry.dtype == .f32 else {
      throw .unsupportedDType(path: path, tensor: name, dtype: entry.dtype.rawValue, expected: "F32")
    }
    let tensor = Tensor(uninitializedShape: entry.shape)
    let target = tensor.mutableBuffer
    data.withUnsafeBytes { raw in
      for i in 0..<target.count {
        let bits = raw.loadUnaligned(fromByteOffset: entry.dataRange.lowerBound + 4 * i, as: UInt32.self)
        target[i] = Float(bitPattern: UInt32(littleEndian: bits))
      }
    }
    return tensor
  }

  /// The `I64` tensor `name` as integers.
  public func integerValues(_ name: String) throws(CheckpointError) -> [Int64] {
    guard let entry = entries[name] else { throw .missingTensor(path: path, tensor: name) }
    guard entry.dtype == .i64 else {
      throw .unsupportedDType(path: path, tensor: name, dtype: entry.dtype.rawValue, expected: "I64")
    }
    return data.withUnsafeBytes { raw in
      (0..<(entry.dataRange.count / 8)).map {
        Int64(littleEndian: raw.loadUnaligned(fromByteOffset: entry.dataRange.lowerBound + 8 * $0, as: Int64.self))
      }
    }
  }

  /// The bytes of a safetensors file holding `floats` as `F32` and `integers` as `I64`
  /// tensors, names sorted, header padded with spaces to a multiple of 8 bytes.
  /// - Parameter checksumKey: when given, the metadata also holds under this key a checksum
  ///   of the other metadata, every entry's name, type, shape and offsets, and the data
  ///   (see ``hasValidChecksum(key:)``).
  public static func encode(
    floats: [(name: String, tensor: Tensor)], integers: [(name: String, values: [Int64], shape: [Int])] = [],
    metadata: [String: String] = [:], checksumKey: String? = nil
  ) -> [UInt8] {
    struct Item {
      let name: String; let dtype: DType; let shape: [Int]; let bytes: Int; let write: (inout [UInt8]) -> Void
    }
    var items: [Item] = floats.map { name, tensor in
      Item(name: name, dtype: .f32, shape: tensor.shape, bytes: tensor.count * 4) { out in
        for value in tensor.buffer { withUnsafeBytes(of: value.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
      }
    }
    items += integers.map { name, values, shape in
      Item(name: name, dtype: .i64, shape: shape, bytes: values.count * 8) { out in
        for value in values { withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) } }
      }
    }
    items.sort { $0.name < $1.name }
    var entries: [Entry] = []
    var offset = 0
    for item in items {
      entries.append(Entry(name: item.name, dtype: item.dtype, shape: item.shape, dataRange: offset..<(offset + item.bytes)))
      offset += item.bytes
    }
    var data: [UInt8] = []
    data.reserveCapacity(offset)
    for item in items { item.write(&data) }
    var metadata = metadata
    if let checksumKey {
      metadata[checksumKey] = checksum(metadata: metadata, entries: entries, data: data, excluding: checksumKey)
    }
    var fields: [String] = []
    if !metadata.isEmpty {
      let pairs = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
      fields.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
    }
    for entry in entries {
      let shape = entry.shape.map(String.init).joined(separator: ",")
      fields.append(
        "\(jsonString(entry.name)):{\"dtype\":\"\(entry.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(entry.dataRange.lowerBound),\(entry.dataRange.upperBound)]}"
      )
    }
    var header = Array("{\(fields.joined(separator: ","))}".utf8)
    while header.count % 8 != 0 { header.append(UInt8(ascii: " ")) }
    var out: [UInt8] = []
    out.reserveCapacity(8 + header.count + offset)
    withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
    out += header
    out += data
    return out
  }

  /// Whether the checksum under `key` in the metadata matches the file's other metadata,
  /// entries and data (`false` when there is none).
  public func hasValidChecksum(key: String) -> Bool {
    guard let saved = metadata[key] else { return false }
    let entries = self.entries.values.sorted { $0.name < $1.name }
    return saved == Self.checksum(metadata: metadata, entries: entries, data: data, excluding: key)
  }

  /// A 64-bit FNV-1a hash, in hexadecimal, of the metadata but `excluding`, the entries
  /// (sorted by name) and the data: any changed byte changes it.
  static func checksum(metadata: [String: String], entries: [Entry], data: [UInt8], excluding: String) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    func add(_ bytes: some Sequence<UInt8>) {
      for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
    }
    for key in metadata.keys.sorted() where key != excluding {
      add(key.utf8)
      add([0])
      add(metadata[key]!.utf8)
      add([0])
    }
    for entry in entries {
      add("\(entry.name)\u{0}\(entry.dtype.rawValue)\u{0}\(entry.shape)\u{0}\(entry.dataRange)\u{0}".utf8)
    }
    data.withUnsafeBufferPointer { add($0) }
    return String(hash, radix: 16)
  }

  /// A JSON string literal.
  static func jsonString(_ text: String) -> String {
    var result = "\""
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\"": result += "\\\""
      case "\\": result += "\\\\"
      case "\n": result += "\\n"
      case "\r": result += "\\r"
      case "\t": result += "\\t"
      case _ where scalar.value < 0x20: result += String(format: "\\u%04x", scalar.value)
      default: result.unicodeScalars.append(scalar)
      }
    }
    return result + "\""
  }
}
