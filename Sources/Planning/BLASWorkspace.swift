import Accumulation
import Memory
import Tensors

/// The memory OpenBLAS allocates inside a matrix product.
///
/// A multithreaded `sgemm` call mallocs a job table for its threads and frees it before
/// returning (OpenBLAS's `level3_thread.c`); it is ordinary jemalloc memory of the calling
/// thread, so the planner models it. Which products use threads is
/// ``Tensors/BLASThreading/usesThreads(m:n:k:)``'s rule.
public enum BLASWorkspace {
  /// The workspace bytes of one threaded product, measured once in this process with
  /// jemalloc (0 when OpenBLAS runs single-threaded, as with `OPENBLAS_NUM_THREADS=1`).
  public static let bytes: Int = {
    // A threaded product with a small output.
    let a = Tensor(zeros: [16, 1024]), b = Tensor(zeros: [1024, 512])
    _ = Tensor.matmul(a, b)
    let (_, withOutput) = TransientPeak.measure { _ = Tensor.matmul(a, b) }
    let (_, outputOnly) = TransientPeak.measure { _ = Tensor(uninitializedShape: [16, 512]) }
    let workspace = withOutput - outputOnly
    // Anything below a few KiB is object noise, not a workspace.
    return workspace > 4096 ? workspace : 0
  }()

  /// The transient bytes of a product `[m, k] · [k, n]` (single-threaded products and
  /// vector kernels allocate nothing).
  public static func bytes(m: Int, n: Int, k: Int) -> Int {
    BLASThreading.usesThreads(m: m, n: n, k: k) ? bytes : 0
  }
}
