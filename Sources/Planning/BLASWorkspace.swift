import Memory
import Synchronization
import Tensors

/// The memory BLAS allocates inside a matrix product, learnt from the library in this
/// process.
///
/// What OpenBLAS mallocs inside a call depends on the kernels it picked for the CPU: a job
/// table for its threads in a threaded `sgemm` (`level3_thread.c`), an operand buffer in
/// some AVX-512 small-matrix kernels, nothing in others. Rather than copy one CPU's rules,
/// each distinct product (extents and transposes) is probed once per process: the very
/// call GradAccum makes for it runs on scratch operands while jemalloc's allocation hooks
/// count the calling thread's bytes (``BLASCall/probe(m:n:k:transposeA:transposeB:arithmetic:measuring:)``).
/// The most bytes alive at once inside the call is the product's workspace, which the
/// planner adds to the bytes alive around it.
public enum BLASWorkspace {
  struct Product: Hashable {
    var m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, oneThread: Bool
  }

  static let probed = Mutex<[Product: Int]>([:])

  /// How many products have been probed so far in this process: a trace during which it
  /// grows saw the probes' own bookkeeping allocations, and is made again.
  public static var probeCount: Int { probed.withLock { $0.count } }

  /// What a product whose scratch operands cannot be mapped counts as: more than any
  /// budget, so the micro-batch that needs it is never chosen.
  public static let unavailableBytes = Int.max / 4

  /// Lets the tensor kernels ask whether a product allocates on one OpenBLAS thread
  /// (``BLASCall/productAllocates``), answered from these probes.
  public static func answerAllocationQuestions() { _ = answering }

  /// Installs the answer once (a static initializer runs once, whatever the threads).
  static let answering: Void = {
    BLASCall.productAllocates = { m, n, k, transposeA, transposeB in
      bytes(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, oneThread: true) > 0
    }
  }()

  /// The bytes the calling thread holds at once inside the product `op(A)[m, k] · op(B)[k, n]`
  /// beyond what it held before (0 without jemalloc's hooks); `oneThread`: run on one
  /// OpenBLAS thread whatever its extents, else on the threads its extents give it.
  public static func bytes(
    m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, oneThread: Bool = false
  ) -> Int {
    // A product that runs on one thread by rule is the same call either way.
    let oneThread = oneThread && BLASThreading.usesThreads(m: m, n: n, k: k)
    let product = Product(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, oneThread: oneThread)
    if let known = probed.withLock({ $0[product] }) { return known }
    let measured =
      BLASCall.probe(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, oneThread: oneThread) { call in
        MemoryStatistics.measurePeak(call).peakBytes
      } ?? unavailableBytes
    probed.withLock { $0[product] = measured }
    return measured
  }
}
