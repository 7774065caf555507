import Foundation
import Testing
import _TestSupport

@Suite("gradaccum bench")
struct BenchCommandTests {
  @Test(.measuresMemory) func tableCSVAndAChartThatRenders() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let csv = directory.appendingPathComponent("sweep.csv").path
    let svg = directory.appendingPathComponent("sweep.svg").path
    let png = directory.appendingPathComponent("sweep.png").path
    let result = try CommandRunner.run([
      "bench", "--model", "linear(64,128) relu linear(128,10)", "--input-shape", "64", "--micro-batches", "1,4,16,64",
      "--budget", "200KB", "--target-batch", "64", "--repeat", "2", "--csv", csv, "--svg", svg, "--optimizer", "adam",
    ])
    #expect(result.status == 0, "\(result.error)")
    // The optimizer and the loss change the memory: the header and the chart name both.
    #expect(result.output.contains("(input 64, cross-entropy, adam)"), "\(result.output)")
    #expect(try String(contentsOfFile: svg, encoding: .utf8).contains("cross-entropy, adam"))
    #expect(result.output.contains("planned"))
    #expect(result.output.contains("over budget") || result.output.contains("fits"))
    let lines = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n")
    #expect(lines.first == "micro_batch,predicted_peak_bytes,measured_peak_bytes,samples_per_second,step_seconds")
    // 1, 4, 16, 64 and the planner's choice (when not among them).
    #expect(lines.count >= 5)
    for line in lines.dropFirst() {
      let cells = line.split(separator: ",", omittingEmptySubsequences: false)
      #expect(cells.count == 5)
      let predicted = Double(cells[1])!, measured = Double(cells[2])!
      #expect(abs(predicted - measured) / measured < 0.02)
      #expect(Double(cells[3])! > 0 && Double(cells[4])! > 0)
    }
    let chart = try String(contentsOfFile: svg, encoding: .utf8)
    for label in [
      "micro-batch (samples, log scale)", "throughput (samples/s)", "peak memory (MiB)", "budget",
      "planned micro-batch",
    ] {
      #expect(chart.contains(label), "chart lacks \(label)")
    }
    // Rendered by librsvg: a valid 860 × 500 PNG.
    let render = Process()
    render.executableURL = URL(fileURLWithPath: "/usr/bin/rsvg-convert")
    render.arguments = [svg, "-o", png]
    let errors = Pipe()
    render.standardError = errors
    try render.run()
    render.waitUntilExit()
    #expect(
      render.terminationStatus == 0,
      "\(String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))")
    let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: png)))
    #expect(bytes.count > 10_000)
    #expect(Array(bytes.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
    func bigEndian(_ offset: Int) -> Int { bytes[offset..<(offset + 4)].reduce(0) { $0 << 8 | Int($1) } }
    #expect(bigEndian(16) == 860 && bigEndian(20) == 500)
  }

  /// A long model under the chart's title fits the chart's 860 points: set smaller, on two
  /// lines when needed (at about 0.55 em per character), rather than running off both edges.
  @Test(.measuresMemory) func aLongModelFitsUnderTheTitle() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let svg = directory.appendingPathComponent("long.svg").path
    let model = Array(repeating: "linear(16,16) relu dropout(0.1)", count: 8).joined(separator: " ") + " linear(16,2)"
    let result = try CommandRunner.run([
      "bench", "--model", model, "--input-shape", "16", "--micro-batches", "1", "--repeat", "1", "--svg", svg,
    ])
    #expect(result.status == 0, "\(result.error)")
    let chart = try String(contentsOfFile: svg, encoding: .utf8)
    let lines = chart.split(separator: "\n").filter { $0.contains("<text") && $0.contains("linear(16,16)") }
    #expect(lines.count == 2, "\(lines)")
    var shown = ""
    for line in lines {
      let size = Double(line.firstMatch(of: /font-size="(\d+)"/)!.1)!
      let content = String(line.firstMatch(of: />([^<]*)</)!.1)
      #expect(size >= 6 && size <= 11)
      #expect(Double(content.count) * 0.55 * size <= 840, "\(content.count) characters at \(size) points")
      shown += (shown.isEmpty ? "" : " ") + content
    }
    #expect(shown.hasPrefix(model))
  }

  @Test(arguments: [
    (["--micro-batches", "1,x"], "--micro-batches \"1,x\" is not a list of positive integers"),
    (["--repeat", "0"], "--repeat is 0"),
    (["--budget", "12XB"], "unknown unit"),
    (["--target-batch", "0"], "--target-batch is 0"),
    (["--svg", "/nonexistent/dir/c.svg", "--micro-batches", "1"], "cannot write /nonexistent/dir/c.svg"),
  ])
  func badInputGivesOneClearLine(extra: [String], message: String) throws {
    let result = try CommandRunner.run(
      ["bench", "--model", "linear(4,2)", "--input-shape", "4", "--repeat", "1"] + extra)
    #expect(result.status != 0 && !result.crashed)
    #expect(result.error.split(separator: "\n").count == 1, "\(result.error)")
    #expect(result.error.contains(message), "\(result.error)")
  }
}
