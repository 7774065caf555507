import CBLAS
import Dispatch
import Foundation

/// Runs a small matrix product as two halves on two threads, each a single-threaded
/// `sgemm` call.
///
/// OpenBLAS's own threading loses on products with few rows (see ``BLASThreading``), yet
/// one core then idles. Splitting the output into two blocks of rows or columns and
/// computing them at once on the calling thread and one helper thread uses both cores
/// without OpenBLAS's partitioning (measured on 2 cores: 4 × 784 · 784 × 512 in 82 µs
/// instead of 132 µs). The helper is one thread started once and woken by a semaphore; a
/// split allocates nothing, so the planner's predictions are unchanged. Products on other
/// threads meanwhile run unsplit.
final class ProductSplitter: @unchecked Sendable {
  /// One `sgemm` call's operands (row-major, β = 1).
  struct Call {
    var a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>
    var m: Int, n: Int, k: Int, lda: Int, ldb: Int, ldc: Int
    var transposeA: Bool, transposeB: Bool

    func run() {
      cblas_sgemm(
        CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans, Int32(m),
        Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb), 1, c, Int32(ldc))
    }
  }

  /// The helper, started on first use (GradAccum starts it before any measured step; see
  /// `BLASWorkspace`).
  static let shared = ProductSplitter()

  /// Products with fewer multiply-adds than this are not worth waking the helper for.
  static let minimumMultiplyAdds = 1 << 16

  /// Held by the thread whose product the helper is computing; another thread that finds
  /// it taken computes its product alone.
  private let busy = NSLock()
  private let start = DispatchSemaphore(value: 0)
  private let done = DispatchSemaphore(value: 0)
  private var pending: Call?

  private init() {
    let thread = Thread { [unowned self] in
      while true {
        self.start.wait()
        self.pending?.run()
        self.done.signal()
      }
    }
    thread.name = "GradAccum products"
    thread.start()
  }

  /// Computes `C (+)= op(A)·op(B)` (`C` already zeroed when not accumulating) as two
  /// halves, splitting the larger of the output's extents.
  func multiply(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int,
    transposeA: Bool, transposeB: Bool
  ) {
    let lda = transposeA ? m : k, ldb = transposeB ? k : n
    var first = Call(
      a: a, b: b, c: c, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: n, transposeA: transposeA,
      transposeB: transposeB)
    guard busy.try() else {
      first.run()
      return
    }
    defer { busy.unlock() }
    var second = first
    if m >= n {
      // Rows of C: rows of op(A).
      let half = m / 2
      first.m = half
      second.m = m - half
      second.a = a + (transposeA ? half : half * k)
      second.c = c + half * n
    } else {
      // Columns of C: columns of op(B).
      let half = n / 2
      first.n = half
      second.n = n - half
      second.b = b + (transposeB ? half * k : half)
      second.c = c + half
    }
    pending = second
    start.signal()
    first.run()
    done.wait()
    pending = nil
  }

  /// Whether a single-threaded product is worth splitting.
  static func splits(m: Int, n: Int, k: Int) -> Bool {
    BLASThreading.defaultThreads > 1 && Swift.max(m, n) >= 2 && m * n * k >= minimumMultiplyAdds
  }
}

extension Tensor {
  /// Starts the helper thread small matrix products are split with, if it is not running
  /// (it allocates its thread once, here rather than inside a measured step).
  @discardableResult
  public static func startProductHelper() -> Bool {
    _ = ProductSplitter.shared
    return BLASThreading.defaultThreads > 1
  }
}
