import Foundation
import Testing
import _TestSupport

/// The README's commands run as written, in order, on the digits data that ships with the
/// tool (in a scratch directory laid out like the repository's root).
@Suite("README commands")
struct ReadmeTests {
  /// The repository's root, from this file's place in it.
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

  /// Every `.build/release/gradaccum …` command of the README's `sh` blocks, continuation
  /// lines joined, split into arguments as a shell would (double quotes).
  static func commands() throws -> [[String]] {
    let text = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
    var commands: [[String]] = []
    var inShell = false
    var current = ""
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
      if line.hasPrefix("```") {
        inShell = line == "```sh"
        continue
      }
      guard inShell else { continue }
      if current.isEmpty && !line.hasPrefix(".build/release/gradaccum ") { continue }
      current += line.hasSuffix("\\") ? String(line.dropLast()) : String(line)
      if !line.hasSuffix("\\") {
        commands.append(words(current))
        current = ""
      }
    }
    return commands
  }

  /// `text` split at spaces outside double quotes.
  static func words(_ text: String) -> [String] {
    var words: [String] = [], word = "", quoted = false, started = false
    for character in text {
      if character == "\"" {
        quoted.toggle()
        started = true
      } else if character == " " && !quoted {
        if started { words.append(word) }
        word = ""
        started = false
      } else {
        word.append(character)
        started = true
      }
    }
    if started { words.append(word) }
    return words
  }

  @Test(.measuresMemory) func everyCommandRuns() throws {
    let commands = try Self.commands()
    #expect(commands.count >= 6, "\(commands)")
    let directory = try CommandRunner.temporaryDirectory()
    let resources = directory.appendingPathComponent("Sources/gradaccum/Resources")
    try FileManager.default.createDirectory(at: resources, withIntermediateDirectories: true)
    for file in ["digits.csv", "fortunes-computers.txt"] {
      try FileManager.default.createSymbolicLink(
        at: resources.appendingPathComponent(file),
        withDestinationURL: Self.root.appendingPathComponent("Sources/gradaccum/Resources/\(file)"))
    }
    for command in commands {
      #expect(!command.contains { $0.hasPrefix("[") }, "an optional part in \(command)")
      let result = try CommandRunner.run(Array(command.dropFirst()), directory: directory)
      #expect(result.status == 0, "\(command.joined(separator: " ")): \(result.error)")
    }
    for output in [
      "run.ckpt", "digits.safetensors", "run.jsonl", "sweep.csv", "sweep.svg", "final.safetensors", "bytes.safetensors",
      "bytes.jsonl",
    ] {
      #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent(output).path), "\(output)")
    }
  }
}
