import Foundation
import GradAccum

/// An SVG chart of a sweep: throughput (left axis) and peak memory (right axis) against
/// micro-batch on a log axis, with the budget as a horizontal line and the planner's choice
/// as a vertical one.
struct SweepChart {
  let title: String
  let points: [Sweep.Point]
  let budgetBytes: Int?
  let chosenMicroBatch: Int?
  /// Further sweeps of the same sizes drawn beside the first (such as with recomputation),
  /// each with its name in the legend.
  var comparisons: [(label: String, points: [Sweep.Point])] = []

  let width = 860.0, height = 500.0
  let left = 90.0, right = 100.0, top = 50.0, bottom = 70.0

  func svg() -> String {
    let plotWidth = width - left - right, plotHeight = height - top - bottom
    let sizes = points.map { Double($0.microBatch) }
    let low = log2(sizes.min() ?? 1), high = max(log2(sizes.max() ?? 2), low + 1)
    func x(_ m: Double) -> Double { left + (log2(m) - low) / (high - low) * plotWidth }
    let allPoints = points + comparisons.flatMap(\.points)
    let maximumRate = niceCeiling(allPoints.map(\.samplesPerSecond).max() ?? 1)
    let mebibytes =
      allPoints.flatMap { [Double($0.measuredPeakBytes), Double($0.predictedPeakBytes)] } + [Double(budgetBytes ?? 0)]
    let maximumMemory = niceCeiling((mebibytes.max() ?? 1) / 1_048_576)
    func yRate(_ value: Double) -> Double { top + plotHeight * (1 - value / maximumRate) }
    func yMemory(_ bytes: Double) -> Double { top + plotHeight * (1 - bytes / 1_048_576 / maximumMemory) }

    var elements: [String] = []
    elements.append("<rect x=\"0\" y=\"0\" width=\"\(width)\" height=\"\(height)\" fill=\"white\"/>")
    elements.append(
      text(width / 2, 22, "Throughput and peak memory against micro-batch", anchor: "middle", size: 15, weight: "bold"))
    elements += subtitleLines(title)
    // Grid and axes.
    for tick in 0...5 {
      let fraction = Double(tick) / 5
      let y = top + plotHeight * (1 - fraction)
      elements.append(line(left, y, left + plotWidth, y, stroke: "#e3e3e3"))
      elements.append(text(left - 8, y + 4, format(maximumRate * fraction), anchor: "end", fill: "#1f5fbf"))
      elements.append(
        text(left + plotWidth + 8, y + 4, format(maximumMemory * fraction), anchor: "start", fill: "#c0561b"))
    }
    var lastLabel = -Double.infinity
    for point in points {
      let px = x(Double(point.microBatch))
      elements.append(line(px, top + plotHeight, px, top + plotHeight + 5, stroke: "#444"))
      // Labels closer than 30 px would overlap; the planned size is named in its annotation.
      if px - lastLabel >= 30 {
        elements.append(text(px, top + plotHeight + 20, "\(point.microBatch)", anchor: "middle"))
        lastLabel = px
      }
    }
    elements.append(line(left, top, left, top + plotHeight, stroke: "#444"))
    elements.append(line(left + plotWidth, top, left + plotWidth, top + plotHeight, stroke: "#444"))
    elements.append(line(left, top + plotHeight, left + plotWidth, top + plotHeight, stroke: "#444"))
    elements.append(
      text(left + plotWidth / 2, height - 22, "micro-batch (samples, log scale)", anchor: "middle", size: 13))
    elements.append(rotated(24, top + plotHeight / 2, "throughput (samples/s)", fill: "#1f5fbf"))
    elements.append(rotated(width - 24, top + plotHeight / 2, "peak memory (MiB)", fill: "#c0561b"))
    // Budget and choice: lines only; their labels are in the legend, where no line runs.
    if let budgetBytes {
      let y = yMemory(Double(budgetBytes))
      elements.append(line(left, y, left + plotWidth, y, stroke: "#d62728", dash: "6 4", width: 1.5))
    }
    if let chosenMicroBatch {
      let px = x(Double(chosenMicroBatch))
      elements.append(line(px, top, px, top + plotHeight, stroke: "#2ca02c", dash: "3 3", width: 1.5))
    }
    // Series. The measured peak is a wide light line and the predicted one a thin dark dashed
    // line on top of it, so both show where they coincide (they usually do, to the byte).
    func draw(_ series: [Sweep.Point], rate: String, measured: String, predicted: String) {
      elements.append(
        polyline(series.map { (x(Double($0.microBatch)), yRate($0.samplesPerSecond)) }, stroke: rate, width: 2))
      elements.append(
        polyline(
          series.map { (x(Double($0.microBatch)), yMemory(Double($0.measuredPeakBytes))) }, stroke: measured,
          width: 6))
      elements.append(
        polyline(
          series.map { (x(Double($0.microBatch)), yMemory(Double($0.predictedPeakBytes))) }, stroke: predicted,
          dash: "5 3", width: 1.5))
      for point in series {
        elements.append(circle(x(Double(point.microBatch)), yRate(point.samplesPerSecond), fill: rate))
      }
    }
    draw(points, rate: "#1f5fbf", measured: "#f4a582", predicted: "#8c2d04")
    // Purple, then green, for the comparisons.
    let comparisonColors = [("#6a3d9a", "#cab2d6", "#3f007d"), ("#1b7837", "#a6dba0", "#00441b")]
    for (comparison, colors) in zip(comparisons, comparisonColors) {
      draw(comparison.points, rate: colors.0, measured: colors.1, predicted: colors.2)
    }
    // Legend, on a white panel so that no line runs through its labels.
    var entries: [(sample: (Double, Double) -> String, label: String)] = [
      ({ self.line($0, $1, $0 + 24, $1, stroke: "#1f5fbf", width: 2) }, "throughput"),
      ({ self.line($0, $1, $0 + 24, $1, stroke: "#f4a582", width: 6) }, "measured peak"),
      ({ self.line($0, $1, $0 + 24, $1, stroke: "#8c2d04", dash: "5 3", width: 1.5) }, "predicted peak"),
    ]
    for (comparison, colors) in zip(comparisons, comparisonColors) {
      entries += [
        ({ self.line($0, $1, $0 + 24, $1, stroke: colors.0, width: 2) }, "throughput, \(comparison.label)"),
        ({ self.line($0, $1, $0 + 24, $1, stroke: colors.1, width: 6) }, "measured peak, \(comparison.label)"),
      ]
    }
    if let budgetBytes {
      entries.append(
        ({ self.line($0, $1, $0 + 24, $1, stroke: "#d62728", dash: "6 4", width: 1.5) },
          "budget \(MemoryBudget.format(bytes: budgetBytes))"))
    }
    if let chosenMicroBatch {
      entries.append(
        ({ self.line($0, $1, $0 + 24, $1, stroke: "#2ca02c", dash: "3 3", width: 1.5) },
          "planned micro-batch \(chosenMicroBatch)"))
    }
    let legendX = left + 12, legendY = top + 14
    elements.append(
      "<rect x=\"\(legendX - 8)\" y=\"\(legendY - 12)\" width=\"\(comparisons.isEmpty ? 190 : 240)\" height=\"\(Double(entries.count) * 18 + 8)\" fill=\"white\" fill-opacity=\"0.92\" stroke=\"#ccc\"/>"
    )
    for (index, entry) in entries.enumerated() {
      let y = legendY + Double(index) * 18
      elements.append(entry.sample(legendX, y))
      elements.append(text(legendX + 30, y + 4, entry.label))
    }
    return """
      <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">
      \(elements.joined(separator: "\n"))
      </svg>

      """
  }

  /// 1, 2 or 5 times a power of ten at or above `value`.
  func niceCeiling(_ value: Double) -> Double {
    guard value > 0 else { return 1 }
    let power = pow(10, floor(log10(value)))
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] where step * power >= value * 1.05 { return step * power }
    return 10 * power
  }

  func format(_ value: Double) -> String {
    value >= 1000
      ? String(format: "%.0f", value) : (value >= 10 ? String(format: "%.0f", value) : String(format: "%.2g", value))
  }

  func escape(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
      .replacingOccurrences(of: ">", with: "&gt;")
  }

  /// The model under the title: in a smaller font when it is long (about 0.55 em per
  /// character), on two lines cut at a space when even 8 points would not fit the width.
  func subtitleLines(_ content: String) -> [String] {
    let available = width - 20
    func size(_ characters: Int) -> Double { min(11, available / (0.55 * Double(max(characters, 1)))) }
    if size(content.count) >= 8 || !content.contains(" ") {
      return [text(width / 2, 40, content, anchor: "middle", size: max(Int(size(content.count)), 6), fill: "#555")]
    }
    // The space that leaves the longer line shortest.
    let characters = Array(content)
    let cut = characters.indices.filter { characters[$0] == " " }.min {
      max($0, characters.count - $0) < max($1, characters.count - $1)
    }!
    let first = String(characters[..<cut]), second = String(characters[(cut + 1)...])
    let points = max(Int(size(max(first.count, second.count))), 6)
    return [
      text(width / 2, 35, first, anchor: "middle", size: points, fill: "#555"),
      text(width / 2, 35 + Double(points) + 1, second, anchor: "middle", size: points, fill: "#555"),
    ]
  }

  func text(
    _ x: Double, _ y: Double, _ content: String, anchor: String = "start", size: Int = 12, fill: String = "#222",
    weight: String = "normal"
  ) -> String {
    "<text x=\"\(x)\" y=\"\(y)\" text-anchor=\"\(anchor)\" font-size=\"\(size)\" font-weight=\"\(weight)\" fill=\"\(fill)\">\(escape(content))</text>"
  }

  func rotated(_ x: Double, _ y: Double, _ content: String, fill: String) -> String {
    "<text x=\"\(x)\" y=\"\(y)\" text-anchor=\"middle\" font-size=\"13\" fill=\"\(fill)\" transform=\"rotate(-90 \(x) \(y))\">\(escape(content))</text>"
  }

  func line(
    _ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String, dash: String? = nil, width: Double = 1
  ) -> String {
    "<line x1=\"\(x1)\" y1=\"\(y1)\" x2=\"\(x2)\" y2=\"\(y2)\" stroke=\"\(stroke)\" stroke-width=\"\(width)\"\(dash.map { " stroke-dasharray=\"\($0)\"" } ?? "")/>"
  }

  func polyline(_ points: [(Double, Double)], stroke: String, dash: String? = nil, width: Double) -> String {
    let coordinates = points.map { "\($0.0),\($0.1)" }.joined(separator: " ")
    return
      "<polyline points=\"\(coordinates)\" fill=\"none\" stroke=\"\(stroke)\" stroke-width=\"\(width)\" stroke-linejoin=\"round\"\(dash.map { " stroke-dasharray=\"\($0)\"" } ?? "")/>"
  }

  func circle(_ x: Double, _ y: Double, fill: String) -> String {
    "<circle cx=\"\(x)\" cy=\"\(y)\" r=\"3.5\" fill=\"\(fill)\"/>"
  }
}
