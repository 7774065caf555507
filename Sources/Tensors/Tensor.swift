#if canImport(Glibc)
  import Glibc
#endif

/// The bytes behind a tensor: one `malloc` block, so that jemalloc sees every buffer.
///
/// Storage is shared by tensors that view the same elements (``Tensor/reshaped(to:)``);
/// it is freed when the last of them goes away. Under ``ShapeTracing`` storage is
/// shape-only: nothing is allocated, the trace records the allocation and the free, and
/// no kernel touches the elements.
public final class TensorStorage {
  /// The first element (an invalid address for shape-only storage).
  public let base: UnsafeMutablePointer<Float>
  /// Number of `Float` elements.
  public let count: Int
  /// The trace that recorded this storage, for shape-only storage.
  let trace: AllocationTrace?
  /// This storage's number in its trace.
  let traceIdentifier: Int

  /// The bytes a buffer of `count` elements asks `malloc` for.
  public static func requestBytes(forCount count: Int) -> Int {
    Swift.max(count, 1) * MemoryLayout<Float>.stride
  }

  /// Allocates `count` elements, uninitialized; records them instead under shape tracing.
  init(uninitializedCount count: Int) {
    precondition(count >= 0, "element count must be non-negative, got \(count)")
    self.count = count
    if let trace = ShapeTracing.current {
      self.trace = trace
      traceIdentifier = trace.recordAllocation(elementCount: count)
      // Never dereferenced: every kernel is skipped for shape-only tensors.
      base = UnsafeMutablePointer(bitPattern: 0x40)!
      return
    }
    trace = nil
    traceIdentifier = -1
    let byteCount = Self.requestBytes(forCount: count)
    guard let raw = malloc(byteCount) else {
      fatalError("malloc of \(byteCount) bytes for a tensor failed")
    }
    base = raw.bindMemory(to: Float.self, capacity: Swift.max(count, 1))
  }

  /// Whether the elements exist (false under shape tracing).
  public var hasElements: Bool { trace == nil }

  deinit {
    if let trace {
      trace.recordFree(identifier: traceIdentifier)
    } else {
      free(base)
    }
  }
}

/// A dense array of `Float` values, row-major, with reverse-mode automatic differentiation.
///
/// A tensor is created by an operation on other tensors or from values. When any input of
/// an operation requires gradients, the result remembers how it was made, and
/// ``backward()`` on a scalar result adds the gradient of that scalar into the
/// ``gradient`` of every tensor that requires gradients (parameters), as PyTorch does:
/// gradients accumulate across `backward()` calls until they are zeroed.
///
/// Tensors are not shared across threads while a graph is being built or differentiated.
public final class Tensor {
  /// The extent of each dimension, outermost first. A scalar has shape `[]`.
  public let shape: [Int]
  /// The elements.
  public let storage: TensorStorage
  /// Whether ``backward()`` computes a gradient for this tensor (a leaf, such as a parameter).
  public var requiresGradient: Bool
  /// The accumulated gradient of a leaf that requires gradients; `nil` until the first
  /// ``backward()`` that reaches it (or ``allocateGradient()``).
  public var gradient: Tensor? {
    get {
      if gradientIsCleared {
        gradientIsCleared = false
        if let storedGradient, storedGradient.hasElements { storedGradient.mutableBuffer.update(repeating: 0) }
      }
      return storedGradient
    }
    set {
      storedGradient = newValue
      gradientIsCleared = false
    }
  }
  /// The gradient buffer, whose contents count as zeros while ``gradientIsCleared``.
  var storedGradient: Tensor?
  /// Set by ``zeroGradient()``: the buffer is not written until it is needed. The next
  /// backward overwrites it instead of adding to it (no zeroing pass, and a product writes
  /// it with β = 0 instead of reading it), and any other reader gets zeros first.
  var gradientIsCleared = false
  /// How this tensor was made, while it is part of a graph to differentiate (until
  /// backward has run through it).
  var node: GradientNode? {
    get { recordedNode?.isLive == true ? recordedNode : nil }
    set { recordedNode = newValue }
  }
  var recordedNode: GradientNode?

  /// Number of elements.
  public var count: Int { storage.count }
  /// Number of dimensions.
  public var rank: Int { shape.count }
  /// The number of bytes of the elements.
  public var elementBytes: Int { count * MemoryLayout<Float>.stride }

  init(shape: [Int], storage: TensorStorage, requiresGradient: Bool = false) {
    self.shape = shape
    self.storage = storage
    self.requiresGradient = requiresGradient
  }

  /// A tensor of the given shape whose elements are not yet set.
  public convenience init(uninitializedShape shape: [Int]) {
    precondition(shape.allSatisfy { $0 >= 0 }, "shape must not have negative extents: \(shape)")
    self.init(shape: shape, storage: TensorStorage(uninitializedCount: shape.reduce(1, *)))
  }

  /// Whether the elements exist; shape-only tensors (made under ``ShapeTracing``) have a
  /// shape and no elements.
  public var hasElements: Bool { storage.hasElements }

  /// A tensor of the given shape filled with `value`.
  public convenience init(repeating value: Float, shape: [Int], requiresGradient: Bool = false) {
    self.init(uninitializedShape: shape)
    if hasElements { storage.base.initialize(repeating: value, count: count) }
    self.requiresGradient = requiresGradient
  }

  /// A tensor of zeros.
  public convenience init(zeros shape: [Int], requiresGradient: Bool = false) {
    self.init(repeating: 0, shape: shape, requiresGradient: requiresGradient)
  }

  /// A tensor holding `values` in row-major order.
  /// - Precondition: `values.count` equals the product of `shape`.
  public convenience init(_ values: [Float], shape: [Int], requiresGradient: Bool = false) {
    let expected = shape.reduce(1, *)
    precondition(
      values.count == expected,
      "\(values.count) values do not fill shape \(shape) (\(expected) elements)")
    self.init(uninitializedShape: shape)
    if hasElements {
      values.withUnsafeBufferPointer { storage.base.update(from: $0.baseAddress!, count: values.count) }
    }
    self.requiresGradient = requiresGradient
  }

  /// A scalar (shape `[]`).
  public convenience init(scalar: Float) {
    self.init([scalar], shape: [])
  }

  /// The elements, row-major (zeros for a shape-only tensor).
  public var values: [Float] { hasElements ? Array(buffer) : Array(repeating: 0, count: count) }

  /// The only element of a one-element tensor.
  public var scalarValue: Float {
    precondition(count == 1, "scalarValue needs one element, shape is \(shape)")
    return hasElements ? storage.base[0] : 0
  }

  /// Copies the elements of `source` (same element count) into this tensor. Prefer it to
  /// `mutableBuffer.update(fromContentsOf: source.buffer)`, which does not keep a
  /// temporary `source` alive while its elements are read.
  public func assign(from source: Tensor) {
    precondition(source.count == count, "cannot assign \(source.count) elements to a tensor of \(count)")
    guard hasElements && source.hasElements else { return }
    storage.base.update(from: source.storage.base, count: count)
  }

  /// The elements as a buffer (read-only by convention). The buffer does not keep the
  /// tensor alive: hold the tensor while the buffer is in use.
  public var buffer: UnsafeBufferPointer<Float> {
    UnsafeBufferPointer(start: storage.base, count: count)
  }

  /// The elements as a mutable buffer. Writing to a tensor that is part of a graph
  /// changes what backward sees; use it for parameters and fresh results only.
  public var mutableBuffer: UnsafeMutableBufferPointer<Float> {
    UnsafeMutableBufferPointer(start: storage.base, count: count)
  }

  /// A copy of the elements that is not part of any graph.
  public func copy() -> Tensor {
    let result = Tensor(uninitializedShape: shape)
    if hasElements && result.hasElements { result.storage.base.update(from: storage.base, count: count) }
    return result
  }

  /// The same elements, cut off from the graph.
  public func detached() -> Tensor {
    Tensor(shape: shape, storage: storage)
  }

  /// Drops the accumulated gradient (the next backward starts it afresh).
  public func clearGradient() { gradient = nil }

  /// Gives a leaf that requires gradients a zero gradient buffer if it has none, so that
  /// the buffer exists from the start (persistent memory) instead of at the first backward.
  public func allocateGradient() {
    if requiresGradient && gradient == nil { gradient = Tensor(zeros: shape) }
  }

  /// Sets the accumulated gradient to zeros, keeping its buffer. The zeros are written
  /// lazily: the next backward overwrites the buffer, or a reader of ``gradient`` sees it
  /// zeroed first.
  public func zeroGradient() {
    if storedGradient != nil { gradientIsCleared = true }
  }

  /// The gradient buffer for a backward pass to write into, and whether to add to its
  /// contents (`false` after ``zeroGradient()``: overwrite them).
  func gradientForWriting() -> (buffer: Tensor, accumulate: Bool)? {
    guard let storedGradient else { return nil }
    defer { gradientIsCleared = false }
    return (storedGradient, !gradientIsCleared)
  }
}

extension Tensor: CustomStringConvertible {
  public var description: String {
    let shown = values.prefix(8).map { "\($0)" }.joined(separator: ", ")
    return "Tensor(shape: \(shape), values: [\(shown)\(count > 8 ? ", …" : "")])"
  }
}

extension Collection where Element == Int {
  /// Number of elements of a tensor with this shape.
  var elementCount: Int { reduce(1, *) }
}
