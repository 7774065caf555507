import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Elementwise work split between the calling thread and one helper thread, on machines
/// where OpenBLAS runs on more than one thread.
///
/// The kernels handed to it allocate nothing, and handing them over allocates nothing (the
/// work is passed by address and the caller waits for it), so the bytes a step allocates,
/// which the planner predicts, are the same as on one thread. The helper is started once
/// (``prepare()``), sleeps when idle, and serves one caller at a time: a call made while it
/// is busy (another thread's, or from inside its own work) runs on the calling thread alone.
/// The split depends only on the size of the work, so results do not depend on timing.
public enum ParallelWork {
  /// Work of fewer elements than this runs on the calling thread only: waking the helper
  /// costs more than it saves.
  public static let minimumElements = 1 << 15

  static let helper: HelperThread? = BLASThreading.defaultThreads > 1 ? HelperThread() : nil

  /// Starts the helper thread now (it is otherwise started by the first parallel work) and
  /// makes one hand-over each way, so that one-time allocations (the thread's, the
  /// runtime's on the first hand-over) happen before anything is measured or traced.
  public static func prepare() { _ = prepared }

  static let prepared: Void = {
    _ = CoreBalance.steps
    guard helper != nil else { return }
    split(minimumElements, computes: false) { _ in }
    split(minimumElements) { _ in }
  }()

  /// Whether ``split(_:elementsPerItem:computes:_:)`` cuts `count` items in two: the
  /// lower half `0..<count/2` and the rest, always the same two ranges (run on two threads,
  /// or one after the other on this one when the helper is busy), so that work that sums
  /// per range gives the same result either way.
  static func splits(_ count: Int, elementsPerItem: Int = 1) -> Bool {
    helper != nil && count >= 2 && count &* Swift.max(elementsPerItem, 1) >= minimumElements
  }

  /// Calls `body` on `0..<count` split into two contiguous ranges, one per thread, when
  /// `count · elementsPerItem` reaches ``minimumElements``; else on the whole range.
  ///
  /// Handing `body` to the other thread makes Swift allocate a few bytes on this thread
  /// (the closure made escaping for the hand-over). So that a shape-only trace sees the
  /// same bytes as the real step, a traced call (`computes` false) makes the same hand-over
  /// and runs nothing; the helper being busy changes only who runs the work.
  package static func split(
    _ count: Int, elementsPerItem: Int = 1, computes: Bool = true, _ body: (Range<Int>) -> Void
  ) {
    guard splits(count, elementsPerItem: elementsPerItem), let helper else {
      if computes { body(0..<count) }
      return
    }
    withoutActuallyEscaping(body) { work in
      var closure = work
      withUnsafePointer(to: &closure) { address in
        if computes { helper.run(count, UnsafeRawPointer(address)) }
      }
    }
  }

  /// Calls `body(item, lane)` for every item of `0..<count`, where each of `lanes` (1 or 2)
  /// has scratch of its own. With two lanes the lower half runs in lane 0 and the rest in
  /// lane 1: on two threads when `shared`, else one after the other on this one (the same
  /// lanes, so work that sums per lane gives the same result), and the hand-over is made in
  /// every case, running nothing unless shared, so that its bytes are the same in a trace
  /// and in a real step. Under shape tracing (`computes` false) `body` runs for item 0
  /// only: a trace records each product once.
  /// - Precondition: two lanes only where ``splits(_:elementsPerItem:)`` holds for `count`.
  static func forEach(_ count: Int, lanes: Int, shared: Bool, computes: Bool, _ body: (Int, Int) -> Void) {
    if lanes == 2 {
      let shared = shared && computes
      split(count, elementsPerItem: minimumElements, computes: shared) { range in
        for item in range { body(item, range.lowerBound == 0 ? 0 : 1) }
      }
      if shared { return }
    }
    guard computes else {
      if count > 0 { body(0, 0) }
      return
    }
    let half = count / 2
    for item in 0..<count { body(item, lanes == 2 && item >= half ? 1 : 0) }
  }
}

/// The one helper thread of ``ParallelWork``.
final class HelperThread: @unchecked Sendable {
  /// Set while a caller owns the helper.
  let busy = Atomic<Bool>(false)
  /// Incremented for each piece of work handed over.
  let generation = Atomic<Int>(0)
  /// The last generation whose second range was claimed, by the helper or by the caller:
  /// each range runs once, on the thread that claims it.
  let claimed = Atomic<Int>(0)
  /// The generation the helper last finished.
  let finished = Atomic<Int>(0)
  /// Whether the helper sleeps on ``condition`` (read and written under ``mutex``).
  var sleeping = false
  /// The work: the address of a `(Range<Int>) -> Void` on the caller's stack, and the
  /// helper's range. Written before ``generation`` is incremented (release), read after
  /// the helper sees it (acquire).
  var task: UnsafeRawPointer?
  var range: Range<Int> = 0..<0
  let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
  let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

  init() {
    pthread_mutex_init(mutex, nil)
    pthread_cond_init(condition, nil)
    var thread = pthread_t()
    let context = Unmanaged.passRetained(self).toOpaque()
    let status = pthread_create(
      &thread, nil,
      { context in
        Unmanaged<HelperThread>.fromOpaque(context!).takeUnretainedValue().serve()
        return nil
      }, context)
    precondition(status == 0, "could not start the helper thread (pthread_create returned \(status))")
    pthread_detach(thread)
  }

  /// Runs the work at `address` (a `(Range<Int>) -> Void`) on the lower half of
  /// `0..<count` here and the upper half on the helper, and returns when both are done; on
  /// this thread alone, the same two ranges one after the other, when the helper is busy.
  ///
  /// When this thread finishes its half before the helper has started the other, it runs
  /// that one too: a helper woken from sleep can be placed by the kernel on this thread's
  /// core and then waits for it, and waiting would cost more than the half.
  func run(_ count: Int, _ address: UnsafeRawPointer) {
    let work = address.assumingMemoryBound(to: ((Range<Int>) -> Void).self)
    let half = count / 2
    guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
      work.pointee(0..<half)
      work.pointee(half..<count)
      return
    }
    defer { busy.store(false, ordering: .releasing) }
    task = address
    range = half..<count
    let mine = generation.wrappingAdd(1, ordering: .releasing).newValue
    pthread_mutex_lock(mutex)
    if sleeping { pthread_cond_signal(condition) }
    pthread_mutex_unlock(mutex)
    work.pointee(0..<half)
    if claimed.compareExchange(expected: mine &- 1, desired: mine, ordering: .acquiringAndReleasing).exchanged {
      work.pointee(half..<count)
    } else {
      while finished.load(ordering: .acquiring) != mine { sched_yield() }
    }
    task = nil
  }

  /// The helper's loop: wait for work (yielding for a while, then asleep), run it, report.
  func serve() {
    var seen = 0
    while true {
      var spins = 0
      while generation.load(ordering: .acquiring) == seen {
        // A while yielding (about a millisecond), then asleep. Products OpenBLAS would
        // thread are cut in halves for this thread (``BLASCall/Halves``), so no OpenBLAS
        // thread competes for the core; waking from sleep between a step's products cost
        // the MLP at micro-batch 16 about 10% (200 yields against 2000).
        spins += 1
        if spins < 2000 {
          sched_yield()
          continue
        }
        pthread_mutex_lock(mutex)
        sleeping = true
        while generation.load(ordering: .acquiring) == seen { pthread_cond_wait(condition, mutex) }
        sleeping = false
        pthread_mutex_unlock(mutex)
      }
      seen = generation.load(ordering: .acquiring)
      // The caller may have run this range itself (and returned): then nothing is touched.
      guard claimed.compareExchange(expected: seen &- 1, desired: seen, ordering: .acquiringAndReleasing).exchanged
      else { continue }
      task!.assumingMemoryBound(to: ((Range<Int>) -> Void).self).pointee(range)
      finished.store(seen, ordering: .releasing)
    }
  }
}
