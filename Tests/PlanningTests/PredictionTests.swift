import GradAccum
import Testing
import _TestSupport

@Suite("Prediction against measurement")
struct PredictionTests {
  @Test func printComparison() throws {
    for (spec, width) in [("linear(784,512) relu linear(512,512) relu linear(512,10)", 784), ("linear(20,64) tanh linear(64,3)", 20)] {
      let specification = try ModelSpecification(parsing: spec)
      let shapeModel = ShapeTracing.run(AllocationTrace()) { specification.build(seed: 1) }
      let estimator = try MemoryEstimator(model: shapeModel, sampleShape: [width], loss: .crossEntropy, optimizer: try Adam())
      let measurement = try MemoryMeasurement(model: specification.build(seed: 1), optimizer: try Adam(), loss: .crossEntropy, sampleShape: [width])
      for m in [1, 2, 3, 8, 64, 100, 256, 1024] {
        let predicted = estimator.estimate(microBatch: m).peakBytes
        let measured = measurement.peakBytes(microBatch: m)
        print("\(spec) m=\(m) predicted \(predicted) measured \(measured) diff \(Double(predicted - measured) / Double(measured) * 100)%")
      }
    }
  }
}
