import Benchmark
import CBLASReference
import GradAccum

/// GradAccum's matrix product against a direct `cblas_sgemm` call on the same buffers.
/// One operation is one 512×512×512 product: 2·512³ floating-point operations.
let benchmarks: @Sendable () -> Void = {
  Benchmark.defaultConfiguration = .init(
    metrics: [.wallClock, .throughput, .mallocCountTotal], maxDuration: .seconds(3), maxIterations: 2000)
  let n = 512
  var generator = RandomGenerator(seed: 1)
  let a = Tensor(uniformShape: [n, n], low: -1, high: 1, generator: &generator)
  let b = Tensor(uniformShape: [n, n], low: -1, high: 1, generator: &generator)

  Benchmark("matmul 512x512 (GradAccum)") { benchmark in
    for _ in benchmark.scaledIterations { blackHole(Tensor.matmul(a, b)) }
  }

  Benchmark("matmul 512x512 (OpenBLAS sgemm)") { benchmark in
    let c = Tensor(zeros: [n, n])
    benchmark.startMeasurement()
    for _ in benchmark.scaledIterations {
      cblas_sgemm(
        CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1, a.storage.base, Int32(n),
        b.storage.base, Int32(n), 0, c.storage.base, Int32(n))
      blackHole(c)
    }
  }
}
