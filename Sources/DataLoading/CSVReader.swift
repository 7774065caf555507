import Foundation
import Memory
import Tensors

/// Why a data file cannot be used.
public enum DataError: Error, Equatable, Sendable, CustomStringConvertible {
  case fileNotReadable(path: String, reason: String)
  case empty(path: String)
  case noRows(path: String)
  case raggedRow(path: String, line: Int, expectedColumns: Int, actualColumns: Int)
  case notNumeric(path: String, line: Int, column: String, text: String)
  case labelColumnNotFound(path: String, column: String, available: [String])
  /// The label column's name is the name of several columns.
  case ambiguousLabelColumn(path: String, column: String, positions: [Int])
  /// The file is not a regular file, or too large to read whole.
  case fileTooLarge(path: String, reason: String)
  /// A validation fraction that is not in (0, 1) or leaves one side empty.
  case invalidSplit(fraction: Double, samples: Int)
  case invalidLabel(path: String, line: Int, value: String, expected: String)
  case noFeatures(path: String)
  case inputShapeMismatch(path: String, features: Int, inputShape: [Int])
  /// A line of a sequence file that cannot be read as a sample (1-based line).
  case malformedSample(path: String, line: Int, problem: String)
  /// A file with no sample in it.
  case noSamples(path: String, expected: String)
  /// A sequence that the model cannot take, with the flag-free advice of what to change.
  case sequenceRejected(path: String, line: Int, problem: String)

  public var description: String {
    switch self {
    case .fileNotReadable(let path, let reason):
      "cannot read data file \(path): \(reason)"
    case .empty(let path):
      "data file \(path) is empty; expected a header row and data rows"
    case .noRows(let path):
      "data file \(path) has a header but no data rows"
    case .raggedRow(let path, let line, let expected, let actual):
      "\(path) line \(line): \(actual) columns, expected \(expected) as in the header"
    case .notNumeric(let path, let line, let column, let text):
      "\(path) line \(line), column \(abbreviated(column)): \"\(abbreviated(text))\" is not a finite number"
    case .labelColumnNotFound(let path, let column, let available):
      "\(path): label column \"\(abbreviated(column))\" not found; columns are \(available.prefix(12).map { abbreviated($0, limit: 40) }.joined(separator: ", "))\(available.count > 12 ? ", …" : "")"
    case .ambiguousLabelColumn(let path, let column, let positions):
      "\(path): label column \"\(abbreviated(column))\" names \(positions.count) columns (0-based \(positions.map(String.init).joined(separator: ", "))); give its index instead"
    case .fileTooLarge(let path, let reason):
      "cannot read data file \(path): \(reason)"
    case .invalidSplit(let fraction, let samples):
      "a validation fraction of \(fraction) of \(samples) samples leaves no sample for training or for validation; expected a fraction in (0, 1) that holds out at least one sample and keeps one"
    case .invalidLabel(let path, let line, let value, let expected):
      "\(path) line \(line): label \(abbreviated(value)) is invalid, expected \(expected)"
    case .noFeatures(let path):
      "\(path): no feature columns besides the label column"
    case .malformedSample(let path, let line, let problem), .sequenceRejected(let path, let line, let problem):
      "\(path) line \(line): \(problem)"
    case .noSamples(let path, let expected):
      "data file \(path) has no samples; expected \(expected)"
    case .inputShapeMismatch(let path, let features, let inputShape):
      "\(path): \(features) feature columns do not fill input shape \(inputShape.map(String.init).joined(separator: "x"))\(checkedElementCount(inputShape).map { " (\($0) values)" } ?? "")"
    }
  }
}

/// What the label column holds.
public enum LabelKind: Sendable {
  /// Class indices: non-negative integers (for cross-entropy).
  case classIndex
  /// Real-valued targets (for regression and binary targets).
  case value
}

/// Reads a numeric CSV file with a header row into a ``TensorDataset``.
public enum CSVReader {
  /// Loads `path`: features are all columns but the label column.
  /// - Parameters:
  ///   - labelColumn: a header name, or a 0-based column index (negative counts from the
  ///     end); `nil` for the last column.
  ///   - labelKind: class indices or values.
  ///   - inputShape: the shape one sample's features are laid out in (`[C, H, W]` for
  ///     images); `nil` for a flat vector.
  /// - Throws: ``DataError`` naming the line and column of the first problem.
  public static func load(
    path: String, labelColumn: String? = nil, labelKind: LabelKind, inputShape: [Int]? = nil
  ) throws(DataError) -> TensorDataset {
    // Read whole, so the file must be a regular one that memory can hold several times.
    if let problem = MachineMemory.wholeFileProblem(path: path, copies: 8) {
      throw .fileTooLarge(path: path, reason: problem)
    }
    let text: String
    do {
      text = try String(contentsOfFile: path, encoding: .utf8)
    } catch {
      let reason = FileManager.default.fileExists(atPath: path) ? "not readable as UTF-8 text" : "no such file"
      throw .fileNotReadable(path: path, reason: reason)
    }
    return try parse(text, path: path, labelColumn: labelColumn, labelKind: labelKind, inputShape: inputShape)
  }

  /// Parses CSV `text` as ``load(path:labelColumn:labelKind:inputShape:)`` does; `path`
  /// names the source in errors.
  public static func parse(
    _ text: String, path: String, labelColumn: String? = nil, labelKind: LabelKind, inputShape: [Int]? = nil
  ) throws(DataError) -> TensorDataset {
    var lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated()
      .map { (number: $0.offset + 1, text: $0.element) }
    lines.removeAll { $0.text.allSatisfy(\.isWhitespace) }
    guard let header = lines.first else { throw .empty(path: path) }
    let names = header.text.split(separator: ",", omittingEmptySubsequences: false).map {
      $0.trimmingCharacters(in: .whitespaces)
    }
    let rows = lines.dropFirst()
    guard !rows.isEmpty else { throw .noRows(path: path) }
    let label = try labelIndex(labelColumn, names: names, path: path)
    let featureCount = names.count - 1
    guard featureCount >= 1 else { throw .noFeatures(path: path) }
    let sampleShape = inputShape ?? [featureCount]
    guard checkedElementCount(sampleShape) == featureCount, sampleShape.allSatisfy({ $0 > 0 }) else {
      throw .inputShapeMismatch(path: path, features: featureCount, inputShape: sampleShape)
    }
    let inputs = Tensor(uninitializedShape: [rows.count] + sampleShape)
    let targets = Tensor(uninitializedShape: [rows.count])
    let x = inputs.mutableBuffer, y = targets.mutableBuffer
    for (row, line) in rows.enumerated() {
      let cells = line.text.split(separator: ",", omittingEmptySubsequences: false)
      guard cells.count == names.count else {
        throw .raggedRow(path: path, line: line.number, expectedColumns: names.count, actualColumns: cells.count)
      }
      var feature = 0
      for (column, cell) in cells.enumerated() {
        let trimmed = cell.trimmingCharacters(in: .whitespaces)
        // Float(_:) would stop at a NUL byte and read "1\0junk" as 1.
        guard !trimmed.utf8.contains(0), let value = Float(trimmed), value.isFinite || column == label else {
          throw .notNumeric(path: path, line: line.number, column: names[column], text: trimmed)
        }
        if column == label {
          y[row] = try checkedLabel(value, text: trimmed, kind: labelKind, line: line.number, path: path)
        } else {
          x[row * featureCount + feature] = value
          feature += 1
        }
      }
    }
    return TensorDataset(inputs: inputs, targets: targets)
  }

  static func labelIndex(_ column: String?, names: [String], path: String) throws(DataError) -> Int {
    guard let column else { return names.count - 1 }
    let matches = names.indices.filter { names[$0] == column }
    if matches.count > 1 { throw .ambiguousLabelColumn(path: path, column: column, positions: matches) }
    if let index = matches.first { return index }
    if let number = Int(column), number >= -names.count, number < names.count {
      return number < 0 ? names.count + number : number
    }
    throw .labelColumnNotFound(path: path, column: column, available: names)
  }

  static func checkedLabel(
    _ value: Float, text: String, kind: LabelKind, line: Int, path: String
  ) throws(DataError) -> Float {
    switch kind {
    case .value:
      guard value.isFinite else {
        throw .invalidLabel(path: path, line: line, value: text, expected: "a finite number")
      }
    case .classIndex:
      guard value.isFinite, value >= 0, value.rounded() == value, value < 16_777_216 else {
        throw .invalidLabel(path: path, line: line, value: text, expected: "a class index (an integer ≥ 0)")
      }
    }
    return value
  }
}
