import Foundation
import Memory
import Tensors

/// Reads sequence data files into a ``SequenceDataset``.
public enum SequenceReader {
  /// Reads JSON Lines: one object per line with `input_ids` (a list of ids) and optionally
  /// `labels` (the same length; −100 for a position that is not predicted). Blank lines are
  /// skipped; other keys are ignored.
  /// - Throws: ``DataError`` naming the file and the line: unreadable or oversized file, a
  ///   line that is not a JSON object, `input_ids` missing, empty or not a list of
  ///   non-negative integers, `labels` of another length, no samples at all.
  public static func loadJSONLines(path: String) throws(DataError) -> SequenceDataset {
    try parseJSONLines(try contents(of: path), path: path)
  }

  /// ``loadJSONLines(path:)`` on bytes already read (`path` names them in messages).
  public static func parseJSONLines(_ data: Data, path: String) throws(DataError) -> SequenceDataset {
    guard !data.isEmpty else { throw .noSamples(path: path, expected: "one JSON object per line with \"input_ids\"") }
    var builder = SequenceDataset.Builder(path: path)
    var lineNumber = 0
    var lineStart = data.startIndex
    while lineStart < data.endIndex {
      lineNumber += 1
      let lineEnd = data[lineStart...].firstIndex(of: UInt8(ascii: "\n")) ?? data.endIndex
      let line = data[lineStart..<lineEnd]
      lineStart = lineEnd < data.endIndex ? lineEnd + 1 : lineEnd
      guard line.contains(where: { !($0 == 0x20 || $0 == 0x09 || $0 == 0x0D) }) else { continue }
      func fail(_ problem: String) -> DataError { .malformedSample(path: path, line: lineNumber, problem: problem) }
      guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
        throw fail("not a JSON object; expected {\"input_ids\": [ids…]} and optionally \"labels\"")
      }
      guard let rawIDs = object["input_ids"] else { throw fail("no \"input_ids\"; expected a list of token ids") }
      let ids = try integers(rawIDs, key: "input_ids", fail: fail)
      let labels = try object["labels"].map { raw throws(DataError) in try integers(raw, key: "labels", fail: fail) }
      try builder.append(ids: ids, labels: labels, line: lineNumber)
    }
    return try builder.finish(expected: "one JSON object per line with \"input_ids\"")
  }

  /// Reads UTF-8 text whose samples are separated by lines equal to `separator` (such as
  /// `%` in fortune files). A sample is the bytes of its lines, each with its line break;
  /// its tokens are bytes (a vocabulary of 256) and its labels its ids. Empty samples (two
  /// separators in a row) are skipped.
  /// - Throws: ``DataError``: unreadable or oversized file, text that is not UTF-8 (naming
  ///   the line), an empty separator, no samples.
  public static func loadText(path: String, separator: String) throws(DataError) -> SequenceDataset {
    guard !separator.isEmpty, !separator.contains("\n") else {
      throw .malformedSample(path: path, line: 1, problem: "the separator must be one non-empty line")
    }
    return try parseText(try contents(of: path), path: path, separator: separator)
  }

  /// ``loadText(path:separator:)`` on bytes already read (`path` names them in messages).
  public static func parseText(_ data: Data, path: String, separator: String) throws(DataError) -> SequenceDataset {
    guard !separator.isEmpty, !separator.contains("\n") else {
      throw .malformedSample(path: path, line: 1, problem: "the separator must be one non-empty line")
    }
    let separatorBytes = Array(separator.utf8)
    var builder = SequenceDataset.Builder(path: path)
    var sample: [Int] = []
    var sampleLine = 1
    var lineNumber = 0
    var lineStart = data.startIndex
    func finishSample() throws(DataError) {
      if !sample.isEmpty { try builder.append(ids: sample, labels: nil, line: sampleLine) }
      sample.removeAll(keepingCapacity: true)
    }
    while lineStart < data.endIndex {
      lineNumber += 1
      let lineEnd = data[lineStart...].firstIndex(of: UInt8(ascii: "\n")) ?? data.endIndex
      let next = lineEnd < data.endIndex ? lineEnd + 1 : lineEnd
      var content = data[lineStart..<lineEnd]
      if content.last == 0x0D { content = content.dropLast() }
      if content.elementsEqual(separatorBytes) {
        try finishSample()
        sampleLine = lineNumber + 1
      } else {
        guard String(validating: data[lineStart..<lineEnd], as: UTF8.self) != nil else {
          throw .malformedSample(path: path, line: lineNumber, problem: "not UTF-8 text")
        }
        if sample.isEmpty { sampleLine = lineNumber }
        sample.append(contentsOf: data[lineStart..<next].lazy.map(Int.init))
      }
      lineStart = next
    }
    try finishSample()
    return try builder.finish(expected: "UTF-8 text with samples separated by lines equal to \"\(separator)\"")
  }

  /// The whole file, after checking that it is a regular file memory can hold.
  static func contents(of path: String) throws(DataError) -> Data {
    if let problem = MachineMemory.wholeFileProblem(path: path, copies: 8) {
      throw .fileTooLarge(path: path, reason: problem)
    }
    do {
      return try Data(contentsOf: URL(fileURLWithPath: path))
    } catch {
      throw .fileNotReadable(path: path, reason: (error as NSError).localizedDescription)
    }
  }

  static func integers(_ raw: Any, key: String, fail: (String) -> DataError) throws(DataError) -> [Int] {
    guard let list = raw as? [Any] else { throw fail("\"\(key)\" is not a list; expected a list of integers") }
    var result: [Int] = []
    result.reserveCapacity(list.count)
    for (position, element) in list.enumerated() {
      // JSON numbers arrive as NSNumber; booleans and fractions are not ids.
      guard let number = element as? NSNumber, String(cString: number.objCType) != "c",
        let value = Int(exactly: number.doubleValue), Double(value) == number.doubleValue
      else {
        throw fail("\(key)[\(position)] is \(abbreviated(String(describing: element))); expected an integer")
      }
      result.append(value)
    }
    return result
  }
}
