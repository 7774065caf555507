import Accumulation
import Memory
import Tensors

/// The memory OpenBLAS allocates inside a matrix product.
///
/// A multithreaded `sgemm` call mallocs a job table for its threads and frees it before
/// returning (OpenBLAS's `level3_thread.c`); it is ordinary jemalloc memory of the calling
/// thread, so the planner models it. OpenBLAS runs a product on one thread, without the
/// table, when `m·n·k ≤ 65536 × GEMM_MULTITHREAD_THRESHOLD (4)`.
public enum BLASWorkspace {
  /// Products with more multiply-adds than this use threads (and the workspace).
  public static let threadingThreshold = 65536 * 4

  /// The workspace bytes of one threaded product, measured once in this process with
  /// jemalloc (0 when OpenBLAS runs single-threaded, as with `OPENBLAS_NUM_THREADS=1`).
  public static let bytes: Int = {
    // 1 × 1024 × 512 = 524 288 multiply-adds, above the threshold; a small output.
    let a = Tensor(zeros: [1, 1024]), b = Tensor(zeros: [1024, 512])
    _ = Tensor.matmul(a, b)
    let (_, withOutput) = TransientPeak.measure { _ = Tensor.matmul(a, b) }
    let (_, outputOnly) = TransientPeak.measure { _ = Tensor(uninitializedShape: [1, 512]) }
    let workspace = withOutput - outputOnly
    // Anything below a few KiB is object noise, not a workspace.
    return workspace > 4096 ? workspace : 0
  }()

  /// The transient bytes of a product `[m, k] · [k, n]`.
  public static func bytes(m: Int, n: Int, k: Int) -> Int {
    m * n * k > threadingThreshold ? bytes : 0
  }
}
