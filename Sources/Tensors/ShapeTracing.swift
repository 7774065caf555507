/// A record of the tensor buffers a piece of code allocates and frees, in order, made
/// without allocating them: under ``ShapeTracing/run(_:_:)`` tensors carry shapes only and
/// no arithmetic is done, so tracing a training step costs microseconds at any batch size.
///
/// The memory planner replays a trace with the allocator's size-class rounding to predict
/// the peak of the same code running for real.
///
/// A trace is filled by the one thread that runs the traced code (hence `@unchecked Sendable`:
/// it is handed to that thread through a task-local value, never shared while in use).
public final class AllocationTrace: @unchecked Sendable {
  /// One allocation or free of a tensor buffer.
  public enum Event: Sendable, Equatable {
    /// Buffer `identifier` of `elementCount` floats, allocated while `layer` (a position in
    /// the model, if any) was running.
    case allocate(identifier: Int, elementCount: Int, layer: Int?)
    /// Buffer `identifier` freed.
    case free(identifier: Int)
    /// A matrix product `op(A)[m, k] · op(B)[k, n]` through BLAS (transposed operands as
    /// flagged), which may allocate (and free) memory of its own during the call;
    /// `oneThread`: run on one OpenBLAS thread whatever its extents (inside
    /// ``BLASCall/onOneThread(_:)``), else on the threads its extents give it.
    case matrixProduct(m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, oneThread: Bool)
  }

  /// The events, in order.
  public private(set) var events: [Event] = []
  /// Named positions in ``events`` (such as where the backward pass starts).
  public private(set) var marks: [String: Int] = [:]
  /// For each event, the other bytes (see ``OtherBytesSample``) right after it.
  public private(set) var otherBytes: [Int] = []
  /// For each event, the most other bytes alive at any moment between the previous event
  /// (or the start) and this one.
  public private(set) var otherPeakBytes: [Int] = []
  /// The most other bytes alive at any moment after the last event, until ``finish()``.
  public private(set) var finalOtherPeakBytes = 0
  /// The layer whose forward pass is running, set by containers such as `Sequential`.
  public var currentLayer: Int?
  /// The bytes the calling thread holds beyond tensor buffers (objects, arrays): now, and
  /// the most at any moment since the previous sample.
  public typealias OtherBytesSample = (nowBytes: Int, intervalPeakBytes: Int)

  /// Reads the other bytes at every event; `nil` to sample nothing.
  let sampleOtherBytes: (() -> OtherBytesSample)?
  var nextIdentifier = 0

  /// - Parameter sampleOtherBytes: called after every event (and by ``finish()``); returns
  ///   the other bytes on the thread (for example from allocator statistics).
  public init(sampleOtherBytes: (() -> OtherBytesSample)? = nil) {
    self.sampleOtherBytes = sampleOtherBytes
  }

  func sample() {
    guard let sampleOtherBytes else { return }
    let reading = sampleOtherBytes()
    otherBytes.append(reading.nowBytes)
    otherPeakBytes.append(reading.intervalPeakBytes)
  }

  /// Takes the last sample of other bytes, after the traced code has returned.
  public func finish() {
    if let sampleOtherBytes { finalOtherPeakBytes = sampleOtherBytes().intervalPeakBytes }
  }

  func recordAllocation(elementCount: Int) -> Int {
    let identifier = nextIdentifier
    nextIdentifier += 1
    events.append(.allocate(identifier: identifier, elementCount: elementCount, layer: currentLayer))
    sample()
    return identifier
  }

  func recordFree(identifier: Int) {
    events.append(.free(identifier: identifier))
    sample()
  }

  /// Records a product that BLAS computes (and may allocate for); `oneThread` as in
  /// ``AllocationEvent/matrixProduct(m:n:k:transposeA:transposeB:oneThread:)``.
  func recordMatrixProduct(m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, oneThread: Bool = false) {
    events.append(
      .matrixProduct(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, oneThread: oneThread))
    sample()
  }

  /// Remembers the current position in ``events`` under `name`.
  public func mark(_ name: String) { marks[name] = events.count }

  /// Makes room for `count` events, so that recording allocates nothing of its own
  /// (which would disturb `sampleOtherBytes`).
  public func reserveCapacity(_ count: Int) {
    events.reserveCapacity(count)
    otherBytes.reserveCapacity(count)
    otherPeakBytes.reserveCapacity(count)
    marks.reserveCapacity(4)
  }

  /// Forgets the events so far (buffers allocated before stay known by identifier).
  public func removeAllEvents() {
    events.removeAll(keepingCapacity: true)
    otherBytes.removeAll(keepingCapacity: true)
    otherPeakBytes.removeAll(keepingCapacity: true)
  }
}

/// Runs code in shape-only mode: every tensor created inside carries a shape and no
/// elements, kernels are skipped, and the buffers are recorded in an ``AllocationTrace``.
public enum ShapeTracing {
  /// The trace recording the calling code, if any.
  @TaskLocal public static var current: AllocationTrace?

  /// Whether the calling code runs under shape tracing.
  public static var isActive: Bool { current != nil }

  /// Runs `body` with tensors recorded in `trace` instead of allocated.
  public static func run<Result>(_ trace: AllocationTrace, _ body: () throws -> Result) rethrows -> Result {
    try $current.withValue(trace, operation: body)
  }
}
