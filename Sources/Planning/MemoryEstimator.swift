import Accumulation
import DataLoading
import Memory
import NeuralNetwork
import Optimizers
import Tensors

/// Predicts the memory of training a model, per micro-batch size, as jemalloc will count it.
///
/// Persistent bytes come from the parameter shapes and the optimizer's state. Transient
/// bytes come from tracing the real micro-step (``WindowStepper/microStep(model:loss:batch:windowItems:)``:
/// making the batch, forward, loss, backward) in shape-only mode: tensors carry shapes and
/// no storage, no arithmetic is done, and every buffer allocation and free is recorded in
/// order, together with the other bytes the thread holds (graph objects, shape arrays).
/// Replaying the trace with jemalloc's size classes gives the most bytes alive at once.
/// A trace costs the same at any micro-batch size, so `m = 100 000` costs what `m = 1` does.
public final class MemoryEstimator {
  public let model: any Layer
  /// The shape of one sample's input.
  public let sampleShape: [Int]
  /// The shape of one sample's target (`[]` for a label or a scalar).
  public let targetShape: [Int]
  public let loss: Loss
  /// Persistent bytes by component.
  public let persistent: PersistentMemory
  /// Multiplies predicted transient bytes (1 by default; below 1 only to test what
  /// happens when the estimate is wrong).
  package var transientScale: Double = 1
  let sizeClasses: SizeClasses?

  /// - Parameters:
  ///   - model: the model (its parameters may be shape-only).
  ///   - sampleShape: one sample's input shape.
  ///   - targetShape: one sample's target shape; `[]` for class labels and scalars.
  ///   - loss, optimizer: what training will use (the optimizer is only read).
  /// - Throws: ``PlanningError/shape(_:)`` when the model cannot take the samples.
  ///   - processes: processes training together (data parallel), for the reduction buffer.
  public init(
    model: any Layer, sampleShape: [Int], targetShape: [Int] = [], loss: Loss, optimizer: Optimizer,
    processes: Int = 1
  ) throws(PlanningError) {
    do {
      let outputShape = try model.outputShape(forInput: sampleShape)
      let probe = ShapeTracing.run(AllocationTrace()) { Tensor(uninitializedShape: [1] + targetShape) }
      try loss.checkTargets(outputShape: outputShape, targets: probe)
    } catch {
      throw .shape(error)
    }
    self.model = model
    self.sampleShape = sampleShape
    self.targetShape = targetShape
    self.loss = loss
    persistent = PersistentMemory(model: model, optimizer: optimizer, processes: processes)
    sizeClasses = try? SizeClasses()
    ParallelWork.prepare()
    BLASWorkspace.answerAllocationQuestions()
    warmUp()
  }

  /// Traces one step and forgets it: the first run of any code makes one-time allocations
  /// (type metadata, caches) that later steps do not repeat and must not be counted. Called
  /// again after the model changes how it runs (segments set to recompute).
  public func warmUp() {
    _ = replay(trace(microBatch: 1))
  }

  /// The bytes jemalloc reserves for a tensor of `elementCount` floats.
  func bufferBytes(_ elementCount: Int) -> Int {
    let request = TensorStorage.requestBytes(forCount: elementCount)
    return sizeClasses?.roundedBytes(forRequest: request) ?? MemoryStatistics.sizeClassBytes(forRequest: request)
  }

  /// The trace of one micro-step of `microBatch` samples. Other bytes (graph objects,
  /// shape arrays) are read with jemalloc's allocation hooks: at every event and the most
  /// in between, so that short-lived objects between two buffers count too.
  ///
  /// A product seen for the first time is probed while the trace runs (``BLASWorkspace``),
  /// and the probe's own bookkeeping would count as the step's bytes: such a trace is made
  /// again, with every product then known.
  public func trace(microBatch: Int) -> AllocationTrace {
    precondition(microBatch >= 1, "a micro-batch holds at least one sample, got \(microBatch)")
    let probes = BLASWorkspace.probeCount
    let first = traceOnce(microBatch: microBatch)
    return BLASWorkspace.probeCount == probes ? first : traceOnce(microBatch: microBatch)
  }

  func traceOnce(microBatch: Int) -> AllocationTrace {
    var baseline = 0
    let trace = AllocationTrace { () -> AllocationTrace.OtherBytesSample in
      let reading = MemoryStatistics.allocationReading()
      return (reading.nowBytes - baseline, reading.intervalPeakBytes - baseline)
    }
    trace.reserveCapacity(1024)
    _ = MemoryStatistics.measurePeak {
      ShapeTracing.run(trace) {
        baseline = MemoryStatistics.allocationReading().nowBytes
        let batch = Batch(
          inputs: Tensor(uninitializedShape: [microBatch] + sampleShape),
          targets: Tensor(uninitializedShape: [microBatch] + targetShape))
        WindowStepper.microStep(model: model, loss: loss, batch: batch, windowItems: microBatch)
      }
      trace.finish()
    }
    return trace
  }

  /// The largest micro-batch whose tensors could fit in `bytes` at all, so that no larger
  /// one needs to be traced (where its shape arithmetic could overflow).
  ///
  /// Past a few hundred samples every buffer of a micro-step grows by a fixed number of
  /// elements per sample or not at all (a convolution's workspace stops growing at the
  /// samples it unfolds together, at most 256): its growth per sample between traces of
  /// 256 and 512 samples. At `m` samples a growing buffer holds at least `m` times that, so
  /// `m` beyond `bytes / (4 · largest growth)` cannot fit.
  public func largestFittingMicroBatch(bytes: Int) -> Int {
    func sizes(_ trace: AllocationTrace) -> [Int] {
      trace.events.compactMap { if case .allocate(_, let count, _) = $0 { count } else { nil } }
    }
    let (small, large) = (256, 512)
    let one = sizes(trace(microBatch: small)), two = sizes(trace(microBatch: large))
    let growth =
      one.count == two.count
      ? zip(one, two).map { ($1 - $0 + large - small - 1) / (large - small) }.max() ?? 1
      : ((two.max() ?? 1) + large - 1) / large
    return max(1, bytes / MemoryLayout<Float>.stride / max(growth, 1))
  }

  /// The multiply-adds of the matrix products of a micro-step of `microBatch` samples
  /// (forward, backward and any recomputation), from its trace: the planner's measure of
  /// the step's arithmetic.
  public func multiplyAdds(microBatch: Int) -> Int {
    var total = 0
    for event in trace(microBatch: microBatch).events {
      if case .matrixProduct(let m, let n, let k, _, _, _) = event { total &+= m &* n &* k }
    }
    return total
  }

  /// The transient bytes `A(m)` of a micro-step of `microBatch` samples: the most bytes
  /// alive at once beyond the persistent ones.
  public func transientBytes(microBatch: Int) -> Int {
    scaled(replay(trace(microBatch: microBatch)).peakBytes)
  }

  func scaled(_ bytes: Int) -> Int { transientScale == 1 ? bytes : Int(Double(bytes) * transientScale) }

  /// The full estimate for `microBatch` samples.
  public func estimate(microBatch: Int) -> MemoryEstimate {
    let trace = trace(microBatch: microBatch)
    let replayed = replay(trace)
    return MemoryEstimate(
      microBatch: microBatch, persistent: persistent, transientBytes: scaled(replayed.peakBytes),
      layerActivationBytes: replayed.layerActivationBytes)
  }

  /// Walks a trace: the peak of rounded live buffers plus other bytes, and per layer the
  /// buffers its forward pass left alive for backward.
  func replay(_ trace: AllocationTrace) -> (peakBytes: Int, layerActivationBytes: [Int: Int]) {
    // Wide integers: a trace of an absurd micro-batch sums past Int.max, and the result is
    // then reported as Int.max / 4 (more than any budget) instead of trapping.
    var live: [Int: (bytes: Int, layer: Int?)] = [:]
    var liveBytes: Int128 = 0
    var peak: Int128 = 0
    let backwardStart = trace.marks["backward"] ?? trace.events.count
    var activations: [Int: Int] = [:]
    for (index, event) in trace.events.enumerated() {
      if index == backwardStart {
        for (_, buffer) in live { if let layer = buffer.layer { activations[layer, default: 0] += buffer.bytes } }
      }
      // Between the previous event and this one the buffers alive did not change.
      if index < trace.otherPeakBytes.count { peak = max(peak, liveBytes + Int128(trace.otherPeakBytes[index])) }
      var workspace = 0
      switch event {
      case .allocate(let identifier, let elementCount, let layer):
        let bytes = bufferBytes(elementCount)
        live[identifier] = (bytes, layer)
        liveBytes += Int128(bytes)
      case .free(let identifier):
        // Buffers made before the trace (parameters) are not part of it.
        if let buffer = live.removeValue(forKey: identifier) { liveBytes -= Int128(buffer.bytes) }
      case .matrixProduct(let m, let n, let k, let transposeA, let transposeB, let oneThread):
        // Alive only during the call.
        workspace = BLASWorkspace.bytes(
          m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, oneThread: oneThread)
      }
      let other = index < trace.otherBytes.count ? trace.otherBytes[index] : 0
      peak = max(peak, liveBytes + Int128(other) + Int128(workspace))
    }
    peak = max(peak, liveBytes + Int128(trace.finalOtherPeakBytes))
    if backwardStart >= trace.events.count {
      for (_, buffer) in live { if let layer = buffer.layer { activations[layer, default: 0] += buffer.bytes } }
    }
    return (Int(min(peak, Int128(BLASWorkspace.unavailableBytes))), activations)
  }
}

/// The predicted memory of training at one micro-batch size.
public struct MemoryEstimate: Sendable, Equatable {
  /// Samples per micro-batch.
  public var microBatch: Int
  /// Parameters, gradients, optimizer state, buffers.
  public var persistent: PersistentMemory
  /// The most bytes alive at once during a micro-step beyond the persistent ones.
  public var transientBytes: Int
  /// Per layer position: bytes of the buffers its forward pass keeps for backward.
  public var layerActivationBytes: [Int: Int]

  /// `P + A(m)`: what must fit in the budget.
  public var peakBytes: Int { persistent.totalBytes + transientBytes }
}
