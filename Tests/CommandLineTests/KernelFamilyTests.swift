import Foundation
import Testing
import _TestSupport

/// OpenBLAS picks its kernels for the CPU, and what they allocate differs (AVX-512
/// small-matrix kernels malloc operand buffers; threaded drivers a job table). The planner
/// must be exact on every family this CPU can run, so the predictions are checked against
/// measurement under each one, in a process of its own (`OPENBLAS_CORETYPE` is read once).
@Suite("Predictions under every OpenBLAS kernel family")
struct KernelFamilyTests {
  /// The kernel families this CPU can run: the AVX-512 ones where it has AVX-512.
  static let families: [String] = {
    let flags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    func has(_ flag: String) -> Bool { flags.contains(" \(flag) ") || flags.contains(" \(flag)\n") }
    var families = ["Prescott"]
    if has("avx") { families.append("Sandybridge") }
    if has("avx2") { families += ["Haswell", "Zen"] }
    if has("avx512f") { families.append("SkylakeX") }
    if has("avx512_bf16") { families.append("Cooperlake") }
    return families
  }()

  /// Narrow-then-wide layers (the AVX-512 small kernels' buffers), products just above and
  /// below OpenBLAS's threading threshold, a tiny model and a CNN.
  static let models: [(model: String, shape: String, sizes: String)] = [
    ("linear(48,6) relu linear(6,6000)", "48", "1,2,3,4,7"),
    ("linear(90,5,bias=false) gelu linear(5,1500)", "90", "2,3"),
    ("linear(22,504)", "22", "63,64,65"),
    ("linear(399,57) tanh linear(57,1)", "399", "16,17"),
    ("linear(64,128) relu linear(128,10)", "64", "32,33,64"),
    ("linear(3,8) tanh linear(8,1)", "3", "1,2,5"),
    ("conv2d(1,8,3,padding=1) relu maxpool2d(2) flatten linear(128,10)", "1x8x8", "1,7,32"),
  ]

  @Test(.measuresMemory, arguments: families)
  func predictionsAreExact(family: String) throws {
    for (model, shape, sizes) in Self.models {
      let result = try CommandRunner.run(
        [
          "plan", "--model", model, "--input-shape", shape, "--optimizer", "adam", "--loss", "mse",
          "--target-batch", "128", "--budget", "1GB", "--measure", "--measure-at", sizes, "--json",
        ], environment: ["OPENBLAS_CORETYPE": family])
      try #require(result.status == 0, "\(family) \(model): \(result.error)")
      let object = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as! [String: Any]
      for measurement in object["measurements"] as! [[String: Int]] {
        let predicted = measurement["predicted_peak_bytes"]!, measured = measurement["measured_peak_bytes"]!
        #expect(
          predicted == measured,
          "\(family) \(model) m=\(measurement["micro_batch"]!): predicted \(predicted), measured \(measured)")
      }
    }
  }
}
