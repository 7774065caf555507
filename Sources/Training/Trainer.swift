import Accumulation
import DataLoading
import DataParallel
import Foundation
import Memory
import NeuralNetwork
import Optimizers
import Planning
import Tensors

/// Settings of a ``Trainer`` beyond the model, optimizer, loss, batch and budget.
public struct TrainerOptions {
  /// The learning rate per optimizer step.
  public var learningRateSchedule: any LearningRateSchedule = ConstantLearningRate()
  /// Clip the accumulated gradient to this global L2 norm before each step.
  public var gradientClipNorm: Float?
  /// Drop an epoch's last window when it holds fewer than the target batch.
  public var dropLast = false
  /// Visit samples in a new seeded order every epoch.
  public var shuffle = true
  /// Seed of the shuffle.
  public var seed: UInt64 = 0
  /// Bytes kept free below the budget when planning; `nil` for 1% of the budget. A budget
  /// too small for micro-batch 1 plus this margin is refused, naming the smallest that fits.
  public var safetyMarginBytes: Int?
  /// One sample's input shape; `nil` to take it from the model's first layer.
  public var inputShape: [Int]?
  /// Multiplies the predicted transient bytes (1 is the estimator as it is). Values
  /// below 1 feed the planner a wrong, too small estimate: for the package's own tests of
  /// the memory guard, not part of the public API.
  package var transientEstimateScale: Double = 1
  /// Write a checkpoint to this file every ``checkpointEvery`` optimizer steps, at the end,
  /// and when stopped.
  public var checkpointPath: String?
  /// Optimizer steps between checkpoints (with ``checkpointPath``).
  public var checkpointEvery = 100
  /// What to do when a window's loss or gradient is NaN or infinite: stop (the default)
  /// or skip the window. Either way no parameter changes for that window.
  public var onNonFinite: NonFinitePolicy = .stop
  /// The processes training together (data parallel): ``SingleProcess`` by default, or an
  /// ``MPIWorld``. Every process runs the same trainer on the same data; each window's
  /// samples are shared among them, and its gradient reduced across them (see
  /// "Data parallel" in the training guide).
  public var communicator: any Communicator = SingleProcess()
  /// Which segments (transformer blocks, convolution stages of a `Sequential`) recompute
  /// their activations in backward: `nil` leaves the model as it is; `.auto` lets the
  /// planner choose the segments and micro-batch it predicts to train fastest within the
  /// budget (for sequences, at the longest sample).
  public var recompute: RecomputePolicy?

  /// Options with PyTorch-like defaults: constant learning rate, no clipping, a seeded
  /// shuffle every epoch, the last partial window kept, a 1% safety margin, the input
  /// shape from the first layer, no checkpoints, stop on a non-finite value.
  public init(
    learningRateSchedule: any LearningRateSchedule = ConstantLearningRate(), gradientClipNorm: Float? = nil,
    dropLast: Bool = false, shuffle: Bool = true, seed: UInt64 = 0, safetyMarginBytes: Int? = nil,
    inputShape: [Int]? = nil, checkpointPath: String? = nil, checkpointEvery: Int = 100,
    onNonFinite: NonFinitePolicy = .stop
  ) {
    self.learningRateSchedule = learningRateSchedule
    self.gradientClipNorm = gradientClipNorm
    self.dropLast = dropLast
    self.shuffle = shuffle
    self.seed = seed
    self.safetyMarginBytes = safetyMarginBytes
    self.inputShape = inputShape
    self.checkpointPath = checkpointPath
    self.checkpointEvery = checkpointEvery
    self.onNonFinite = onNonFinite
  }
}

/// Trains a model with the batch you want in the memory you have.
///
/// The trainer plans at initialization: the largest micro-batch whose step fits in the
/// budget, the accumulation count and balanced window sizes (``plan``). ``fit(_:epochs:)``
/// then trains window by window following the three rules: balanced micro-batches, each
/// micro-batch's summed loss divided by its window's item count (so the last, partial
/// window of an epoch is right too, and ignored labels are counted over the whole window),
/// and everything that happens per step (schedule, clipping, logging) once per window.
///
/// Every micro-step's peak is measured with jemalloc and checked against the budget. When
/// one goes over, the trainer re-plans with the overshoot added to its estimate and runs
/// the rest of the window with smaller micro-batches: no sample is lost or repeated and the
/// arithmetic is the same.
///
/// ```swift
/// let trainer = try Trainer(model: model, optimizer: Adam(learningRate: 1e-3),
///                           loss: .crossEntropy, targetBatch: 40, memoryBudget: .mb(64))
/// print(trainer.plan)
/// let report = try trainer.fit(dataset, epochs: 3)
/// ```
public final class Trainer {
  public let model: any Layer
  public let optimizer: Optimizer
  public let loss: Loss
  public let targetBatch: Int
  /// How windows are cut: planned under a budget, or fixed by the caller.
  public let schedule: TrainingSchedule
  public let options: TrainerOptions
  /// The current plan (re-made when the memory guard lowers the micro-batch).
  public internal(set) var plan: Plan
  /// One sample's input shape.
  public let inputShape: [Int]
  /// Messages about the run that are not errors (batch statistics under accumulation, a
  /// checkpoint written under another budget, skipped windows), in order.
  public private(set) var warnings: [String] = []
  /// Epochs finished so far (``fit(_:epochs:)`` counts epochs in total).
  public var completedEpochs: Int { progress.epoch }

  /// Receives every ``TrainingEvent`` as it happens. Warnings made before it was set (at
  /// initialization, or when resuming) are delivered when it is set.
  public var onEvent: ((TrainingEvent) -> Void)? {
    didSet { deliverWarnings() }
  }
  /// How many of ``warnings`` ``onEvent`` has been given.
  var deliveredWarnings = 0
  /// Where step records and the summary go, if anywhere.
  public var log: TrainingLog?

  let stepper: WindowStepper
  let estimator: MemoryEstimator
  /// Data parallel: every gradient, then the window's loss, packed for one reduction per
  /// window (persistent, and counted as such).
  var reductionBuffer: Tensor?
  /// Data parallel: the bytes MPI allocates on the training thread inside one reduction
  /// of ``reductionBuffer``, measured once at initialization (0 for one process).
  public private(set) var reductionWorkspaceBytes = 0
  /// Micro-batch sizes whose micro-step was measured within the budget in this run.
  var measuredWithinBudget: Set<Int> = []
  /// The micro-step that went over the budget, if one did (after it only sizes in
  /// ``measuredWithinBudget`` run).
  var overshoot: (microBatch: Int, peakBytes: Int)?
  /// For sequence data: per padded length, the most samples a micro-step of that length was
  /// measured with within the budget; and the padded length of the micro-step that went
  /// over it, if one did.
  var measuredSequenceShapes: [Int: Int] = [:]
  var overshootLength: Int?
  /// Whether the run trains on sequences of different lengths (set by ``fit(_:epochs:)``
  /// or a resumed checkpoint).
  var trainsSequences = false
  /// Plans micro-batches by length, made on the first ``fit(_:epochs:)`` with sequence data.
  var sequencePlanner: SequencePlanner?
  /// The budget every micro-step is checked against (`nil` for a fixed schedule).
  public var memoryBudget: MemoryBudget? {
    if case .planned(let budget) = schedule { budget } else { nil }
  }
  var progress = TrainingProgress()
  let stopFlag = StopFlag()

  /// Plans training of `model` with windows of `targetBatch` samples in `memoryBudget`.
  /// Gradient buffers and optimizer state are made here.
  /// - Throws: ``PlanningError`` when even one sample per micro-batch does not fit, the
  ///   target batch is not positive, or the input shape is unknown or does not fit.
  public convenience init(
    model: any Layer, optimizer: Optimizer, loss: Loss, targetBatch: Int, memoryBudget: MemoryBudget,
    options: TrainerOptions = TrainerOptions()
  ) throws(PlanningError) {
    try self.init(
      model: model, optimizer: optimizer, loss: loss, targetBatch: targetBatch, schedule: .planned(memoryBudget),
      options: options)
  }

  /// Trains `model` with micro-batches of `microBatch` samples, `accumulationCount` of them
  /// per optimizer step (a window of `microBatch × accumulationCount` samples; an epoch's
  /// last window may hold fewer, its last micro-batch smaller). Every micro-step is still
  /// measured and reported; no budget is checked.
  /// - Throws: ``PlanningError`` for a micro-batch or count below 1 (or a window too large
  ///   to count), or an input shape that is unknown or does not fit.
  public convenience init(
    model: any Layer, optimizer: Optimizer, loss: Loss, microBatch: Int, accumulationCount: Int = 1,
    options: TrainerOptions = TrainerOptions()
  ) throws(PlanningError) {
    guard microBatch >= 1 else { throw .invalidMicroBatch(microBatch) }
    guard accumulationCount >= 1 else { throw .invalidAccumulationCount(accumulationCount) }
    let (targetBatch, overflow) = microBatch.multipliedReportingOverflow(by: accumulationCount)
    guard !overflow else { throw .invalidAccumulationCount(accumulationCount) }
    try self.init(
      model: model, optimizer: optimizer, loss: loss, targetBatch: targetBatch,
      schedule: .fixed(microBatch: microBatch, accumulationCount: accumulationCount), options: options)
  }

  init(
    model: any Layer, optimizer: Optimizer, loss: Loss, targetBatch: Int, schedule: TrainingSchedule,
    options: TrainerOptions
  ) throws(PlanningError) {
    // Gradient buffers and optimizer state exist before the micro-step is traced, as in
    // training (a traced backward pass accumulates into them and allocates none).
    stepper = WindowStepper(
      model: model, optimizer: optimizer, loss: loss, learningRateSchedule: options.learningRateSchedule,
      gradientClipNorm: options.gradientClipNorm)
    stepper.processes = options.communicator.size
    var buffer: Tensor?
    var reduction = 0
    if options.communicator.size > 1, model.parameters.allSatisfy(\.hasElements) {
      let flat = Tensor(zeros: [PersistentMemory.communicationElements(model.parameters)])
      // What the reduction allocates inside MPI, on this thread (every process probes
      // together, as every reduction is collective).
      reduction = MemoryStatistics.measurePeak { options.communicator.sumInPlace(flat.mutableBuffer) }.peakBytes
      flat.mutableBuffer.update(repeating: 0)
      buffer = flat
    }
    let (inputShape, estimator, plan) = try Self.planned(
      model: model, optimizer: optimizer, loss: loss, targetBatch: targetBatch, schedule: schedule, options: options,
      reductionWorkspaceBytes: buffer == nil ? nil : reduction)
    reductionBuffer = buffer
    reductionWorkspaceBytes = reduction
    self.model = model
    self.optimizer = optimizer
    self.loss = loss
    self.targetBatch = targetBatch
    self.schedule = schedule
    self.options = options
    self.inputShape = inputShape
    self.estimator = estimator
    self.plan = plan
    warmUp()
    if model.dependsOnBatch && plan.accumulationCount > 1 {
      warn(
        "the model has layers that normalize over the batch; with \(plan.accumulationCount) micro-batches per step their statistics come from micro-batches of about \(plan.windowSizes[0]) samples, not from windows of \(targetBatch)"
      )
    }
  }

  /// Runs one real micro-step of one zero sample and undoes it (gradients, running
  /// statistics, counters and random generators as they were), so that the Swift runtime's
  /// one-time allocations happen here and not inside the first measured micro-step: type
  /// metadata made on first use is kept for the whole process, in 16 KiB slabs, and is not
  /// training memory. The step is that of micro-batch 1, which the plan fits.
  func warmUp() {
    guard model.parameters.allSatisfy(\.hasElements), let outputShape = try? model.outputShape(forInput: inputShape)
    else { return }
    let saved = LayerRunningState(of: model)
    let targetShape = loss.targetShape(outputShape: outputShape)
    // Zeros are valid targets for every loss (class 0, probability 0, value 0).
    let batch = Batch(inputs: Tensor(zeros: [1] + inputShape), targets: Tensor(zeros: [1] + targetShape))
    WindowStepper.microStep(model: model, loss: loss, batch: batch, windowItems: 1)
    stepper.discardWindow()
    saved.restore()
  }

  /// The plan a trainer with these arguments makes, from the model's shapes alone: the
  /// model may be shape-only (built under `ShapeTracing`), so that a budget too small, or a
  /// model too large, is refused before any parameter exists.
  /// - Throws: ``PlanningError``, as ``init(model:optimizer:loss:targetBatch:memoryBudget:options:)``.
  public static func plan(
    model: any Layer, optimizer: Optimizer, loss: Loss, targetBatch: Int, memoryBudget: MemoryBudget,
    options: TrainerOptions = TrainerOptions()
  ) throws(PlanningError) -> Plan {
    try planned(
      model: model, optimizer: optimizer, loss: loss, targetBatch: targetBatch, schedule: .planned(memoryBudget),
      options: options, reductionWorkspaceBytes: nil
    ).plan
  }

  /// - Parameter reductionWorkspaceBytes: what MPI allocates in the gradient reduction, as
  ///   measured (`nil`: estimated, for several processes).
  static func planned(
    model: any Layer, optimizer: Optimizer, loss: Loss, targetBatch: Int, schedule: TrainingSchedule,
    options: TrainerOptions, reductionWorkspaceBytes measuredReduction: Int?
  ) throws(PlanningError) -> (inputShape: [Int], estimator: MemoryEstimator, plan: Plan) {
    guard targetBatch >= 1 else { throw .invalidTargetBatch(targetBatch) }
    guard let inputShape = options.inputShape ?? Self.inputShape(of: model) else { throw .unknownInputShape }
    let outputShape: [Int]
    do {
      outputShape = try model.outputShape(forInput: inputShape)
    } catch {
      throw .shape(error)
    }
    let processes = options.communicator.size
    if let policy = options.recompute { RecomputePolicy.apply(policy, to: model) }
    let estimator = try MemoryEstimator(
      model: model, sampleShape: inputShape, targetShape: loss.targetShape(outputShape: outputShape), loss: loss,
      optimizer: optimizer, processes: processes)
    estimator.transientScale = options.transientEstimateScale
    switch schedule {
    case .planned(let budget):
      // Samples of one shape choose here; sequences when their lengths are known.
      if !Self.takesSequences(model) {
        chooseRecomputation(
          estimator: estimator, loss: loss, sampleShape: inputShape,
          upTo: Self.largestShare(samples: targetBatch, processes: processes), budget: budget, options: options)
      }
      // Each process plans for its share of a window: at most ⌈T / N⌉ samples.
      let reduction =
        processes == 1
        ? 0
        : measuredReduction
          ?? Planner.reductionWorkspaceEstimate(elements: PersistentMemory.communicationElements(model.parameters))
      let plan = try Planner.plan(
        estimator: estimator, targetBatch: Self.largestShare(samples: targetBatch, processes: processes), budget: budget,
        marginBytes: options.safetyMarginBytes, reductionWorkspaceBytes: reduction, processes: processes)
      return (inputShape, estimator, plan)
    case .fixed(let microBatch, _):
      // No budget: the plan shows the predicted memory against the largest budget there is.
      let plan = Planner.makePlan(
        estimator: estimator, targetBatch: targetBatch, budget: .bytes(MemoryBudget.maximumBytes),
        microBatch: microBatch)
      return (inputShape, estimator, plan)
    }
  }

  /// Whether the model's input is a sequence of ids (its first layer is an embedding).
  static func takesSequences(_ model: any Layer) -> Bool {
    (model as? Sequential)?.layers.first is Embedding || model is Embedding
  }

  /// Sets the estimator's model to recompute as `options.recompute` chooses within `budget`
  /// for micro-batches of up to `limit` samples of `sampleShape`: `auto` the fastest option
  /// (timed on the model), `all` every segment (lean only where needed); `selective`,
  /// `none` and `nil` leave it as it is (set when the trainer was made).
  static func chooseRecomputation(
    estimator: MemoryEstimator, loss: Loss, sampleShape: [Int], upTo limit: Int, budget: MemoryBudget,
    options: TrainerOptions
  ) {
    switch options.recompute {
    case .auto:
      RecomputeChoice.applyBest(
        estimator: estimator, upTo: limit, budget: budget, marginBytes: options.safetyMarginBytes,
        timing: RecomputeTiming(model: estimator.model, loss: loss, sampleShape: sampleShape))
    case .all:
      RecomputeChoice.applyAll(estimator: estimator, budget: budget, marginBytes: options.safetyMarginBytes)
    case .selective, RecomputePolicy.none?, nil:
      break
    }
  }

  /// The model's segments (by layer position) that recompute their activations in backward.
  public var recomputedSegments: [Range<Int>] { RecomputePolicy.recomputed(in: model) }

  /// Whether the recomputed transformer blocks run their attention one head at
  /// a time (chosen where only that holds the budget; ``RecomputeChoice``).
  public var recomputesLean: Bool { !recomputedSegments.isEmpty && RecomputePolicy.isLean(model) }

  /// Whether the transformer blocks that keep their activations recompute their attention
  /// weights and GELU outputs in backward (selective recomputation).
  public var recomputesSelectively: Bool { RecomputePolicy.isSelective(model) }

  /// Whether anything is recomputed in backward: a segment, or selectively.
  public var recomputes: Bool { !recomputedSegments.isEmpty || recomputesSelectively }

  /// `layers 2, 3 (activations recomputed in backward)`, for logs.
  public var recomputeDescription: String {
    RecomputePolicy.describe(recomputedSegments, lean: recomputesLean, selective: recomputesSelectively)
  }

  /// The samples each of `processes` takes of a window of `samples`: shares that differ
  /// by at most one, larger first (a process may get none).
  public static func shares(samples: Int, processes: Int) -> [Int] {
    (0..<processes).map { samples / processes + ($0 < samples % processes ? 1 : 0) }
  }

  /// The samples each of `processes` takes of a window of sequences of `lengths` (in the
  /// window's order): contiguous shares whose token counts are as even as whole samples
  /// allow (each boundary placed nearest its fraction of the window's tokens), so a share
  /// of long samples holds fewer of them. A process may get none.
  public static func shares(lengths: [Int], processes: Int) -> [Int] {
    let total = Double(lengths.reduce(0, +))
    var shares: [Int] = []
    var start = 0, tokens = 0
    for rank in 0..<(processes - 1) {
      let target = total * Double(rank + 1) / Double(processes)
      var end = start
      while end < lengths.count && Double(tokens + lengths[end]) <= target {
        tokens += lengths[end]
        end += 1
      }
      // The next sample too, when that puts the boundary nearer its target.
      if end < lengths.count && abs(Double(tokens + lengths[end]) - target) < abs(Double(tokens) - target) {
        tokens += lengths[end]
        end += 1
      }
      shares.append(end - start)
      start = end
    }
    shares.append(lengths.count - start)
    return shares
  }

  /// The shares of a window whose samples are `indices` in the window's order: balanced by
  /// tokens for sequences (`lengths`), by count otherwise.
  static func shares(of indices: ArraySlice<Int>, lengths: [Int]?, processes: Int) -> [Int] {
    if let lengths, processes > 1 { return shares(lengths: indices.map { lengths[$0] }, processes: processes) }
    return shares(samples: indices.count, processes: processes)
  }

  /// Window `window` of an epoch visiting samples in `order`: its size, every process's
  /// share of it, and this process's samples (all of them when training alone). The window
  /// is the same whatever the number of processes.
  func share(ofWindow window: Int, order: [Int], lengths: [Int]?) -> (
    samples: Int, shares: [Int], indices: ArraySlice<Int>
  ) {
    let world = options.communicator
    let start = window * targetBatch, samples = min(targetBatch, order.count - start)
    let shares = Self.shares(of: order[start..<(start + samples)], lengths: lengths, processes: world.size)
    let shareStart = start + shares[..<world.rank].reduce(0, +)
    return (samples, shares, order[shareStart..<(shareStart + shares[world.rank])])
  }

  /// The largest share of a window of `samples` among `processes`: `⌈samples / processes⌉`.
  public static func largestShare(samples: Int, processes: Int) -> Int {
    samples / processes + (samples % processes > 0 ? 1 : 0)
  }

  /// Optimizer steps in an epoch of `sampleCount` samples (windows of the target batch).
  public func windowCount(sampleCount: Int) -> Int {
    Plan.windowCount(sampleCount: sampleCount, targetBatch: targetBatch, dropLast: options.dropLast)
  }

  /// The input shape a model's first layer declares: a `Linear` layer's input size, or one
  /// token for a token model (whose first layer is an embedding).
  static func inputShape(of model: any Layer) -> [Int]? {
    if let sequential = model as? Sequential, let first = sequential.layers.first, !(first is Embedding) {
      return inputShape(of: first)
    }
    if let linear = model as? Linear { return [linear.inputSize] }
    // Token models: one token (the plan made at initialization checks that the parameters
    // and the shortest sample fit; each window is then planned by its samples' lengths).
    if let sequential = model as? Sequential, sequential.layers.first is Embedding { return [1] }
    return nil
  }

  func warn(_ message: String) {
    warnings.append(message)
    deliverWarnings()
  }

  func deliverWarnings() {
    guard let onEvent else { return }
    while deliveredWarnings < warnings.count {
      deliveredWarnings += 1
      onEvent(.warning(warnings[deliveredWarnings - 1]))
    }
  }

  /// Asks a running ``fit(_:epochs:)`` to stop after the current micro-step (safe to call
  /// from a signal handler's queue). The run then writes a checkpoint if one is configured.
  public func requestStop() { stopFlag.set() }

  /// Sequence data: checks that every sample fits alone under the budget (before any step)
  /// and makes the planner that composes windows by length.
  /// - Throws: ``TrainingError/sequenceDoesNotFit(sample:length:budgetBytes:smallestBudgetBytes:longestFittingLength:)``
  func prepareSequences(lengths: [Int]) throws(TrainingError) {
    trainsSequences = true
    guard case .planned(let budget) = schedule else { return }
    if sequencePlanner == nil {
      do {
        let processes = options.communicator.size
        if (options.recompute ?? .none) != .none, let longest = lengths.max() {
          // Choose at the longest sample, whose micro-batches the budget limits most.
          let estimator = try MemoryEstimator(
            model: model, sampleShape: [longest], targetShape: [longest], loss: loss, optimizer: optimizer,
            processes: processes)
          Self.chooseRecomputation(
            estimator: estimator, loss: loss, sampleShape: [longest],
            upTo: Self.largestShare(samples: targetBatch, processes: processes), budget: budget, options: options)
        }
        let planner = try SequencePlanner(
          model: model, loss: loss, optimizer: optimizer,
          targetBatch: Self.largestShare(samples: targetBatch, processes: processes), budget: budget,
          marginBytes: options.safetyMarginBytes, processes: processes)
        planner.transientScale = options.transientEstimateScale
        sequencePlanner = planner
      } catch {
        throw .invalidSetting(name: "the sequence plan", value: "\(error)", expected: "a plan")
      }
    }
    guard let planner = sequencePlanner, let longest = lengths.indices.max(by: { lengths[$0] < lengths[$1] }) else {
      return
    }
    do {
      if try planner.capacity(paddedLength: lengths[longest]) == 0 {
        throw TrainingError.sequenceDoesNotFit(
          sample: longest, length: lengths[longest], budgetBytes: budget.bytes,
          smallestBudgetBytes: try planner.smallestBudget(paddedLength: lengths[longest]),
          longestFittingLength: try planner.longestFittingLength(upTo: lengths[longest]))
      }
    } catch let error as TrainingError {
      throw error
    } catch {
      throw .invalidSetting(name: "the sequence plan", value: "\(error)", expected: "a plan")
    }
  }

  /// How sequence data will train under this trainer's budget: the windows of the next
  /// epoch's sample order composed by length, the padding saved, and the heaviest
  /// micro-batches' predicted peaks (`nil` for data of fixed-size samples or a fixed
  /// schedule).
  /// - Throws: ``TrainingError/sequenceDoesNotFit(sample:length:budgetBytes:smallestBudgetBytes:longestFittingLength:)``
  ///   when a sample does not fit alone.
  public func sequencePlan(for dataset: some Dataset) throws(TrainingError) -> SequencePlan? {
    guard let lengths = dataset.sequenceLengths, !lengths.isEmpty else { return nil }
    try prepareSequences(lengths: lengths)
    guard let sequencePlanner else { return nil }
    let order = DataLoader.sampleOrder(
      count: lengths.count, epoch: progress.epoch, shuffle: options.shuffle, seed: options.seed)
    let windows = (0..<windowCount(sampleCount: lengths.count)).map { window in
      share(ofWindow: window, order: order, lengths: lengths).indices.map { lengths[$0] }
    }.filter { !$0.isEmpty }
    do {
      return try sequencePlanner.plan(windowLengths: windows)
    } catch {
      throw .invalidSetting(name: "the sequence plan", value: "\(error)", expected: "a plan")
    }
  }

  /// After an overshoot on sequences: the most samples of padded length `length` a
  /// micro-step may hold, from shapes measured within the budget (a micro-batch of at most
  /// as many samples, padded to at most as many tokens, as one measured within it).
  func measuredSequenceCapacity(_ length: Int) -> Int {
    var capacity = 0
    for (measuredLength, samples) in measuredSequenceShapes where measuredLength >= length {
      capacity = max(capacity, samples)
    }
    if let overshoot, let overshootLength, length <= overshootLength {
      capacity = min(capacity, overshoot.microBatch - 1)
    }
    return capacity
  }

  /// Whether micro-batches of `sizes` over `indices` (in length order) fit this run's plan.
  func fitsSequencePlan(_ sizes: ArraySlice<Int>, indices: [Int], lengths: [Int]) -> Bool {
    guard sizes.reduce(0, +) == indices.count else { return false }
    guard case .planned = schedule, let planner = sequencePlanner else { return true }
    var start = 0
    for size in sizes {
      let length = lengths[indices[start]]
      let capacity: Int
      if overshoot != nil {
        capacity = measuredSequenceCapacity(length)
      } else {
        do { capacity = try planner.capacity(paddedLength: length) } catch { return false }
      }
      if size > capacity { return false }
      start += size
    }
    return true
  }

  /// The micro-batch sizes of a window whose samples are `indices` (for sequences, in
  /// length order): for fixed-size samples as ``windowSizes(samples:dataset:)``; for
  /// sequences composed by length under the budget (after an overshoot, from shapes
  /// measured within it), or fixed micro-batches.
  func windowSizes(indices: [Int], lengths: [Int]?, dataset: some Dataset) throws(TrainingError) -> [Int] {
    // A process may take no sample of a small last window.
    guard !indices.isEmpty else { return [] }
    guard let lengths else { return try windowSizes(samples: indices.count, dataset: dataset) }
    let sorted = indices.map { lengths[$0] }
    guard case .planned = schedule, let planner = sequencePlanner else {
      return Self.windowSizes(samples: indices.count, schedule: schedule, microBatch: plan.microBatch)
    }
    if overshoot != nil {
      if let sizes = SequencePlanner.compose(sortedLengths: sorted, capacity: measuredSequenceCapacity) { return sizes }
      try stopBeforeWindow(dataset: dataset)
    }
    do {
      return try planner.compose(sortedLengths: sorted)
    } catch {
      throw .invalidSetting(name: "the window's composition", value: "\(error)", expected: "samples that fit")
    }
  }

  /// The micro-batch sizes of a window of `samples`: balanced by the plan, or micro-batches
  /// of the fixed size (the last one smaller), or after a micro-step went over the budget,
  /// made only of sizes measured within it.
  func windowSizes(samples: Int, dataset: some Dataset) throws(TrainingError) -> [Int] {
    if overshoot != nil {
      if let sizes = Self.compose(samples: samples, from: measuredWithinBudget) { return sizes }
      try stopBeforeWindow(dataset: dataset)
    }
    return Self.windowSizes(samples: samples, schedule: schedule, microBatch: plan.microBatch)
  }

  /// After an overshoot, when the sizes measured within the budget cannot make a window:
  /// the run stops before it, with its checkpoint and the overshoot's error.
  func stopBeforeWindow(dataset: some Dataset) throws(TrainingError) -> Never {
    let (microBatch, peak) = overshoot ?? (0, 0)
    try stop(dataset: dataset)
    throw .budgetExceeded(microBatch: microBatch, peakBytes: peak, budgetBytes: memoryBudget?.bytes ?? 0)
  }

  /// The sizes of a window of `samples` under `schedule` (with `microBatch`, the plan's).
  static func windowSizes(samples: Int, schedule: TrainingSchedule, microBatch: Int) -> [Int] {
    switch schedule {
    case .planned: Array(Plan.balancedSizes(samples: samples, microBatch: microBatch))
    case .fixed(let size, _):
      Array(repeating: size, count: samples / size) + (samples % size > 0 ? [samples % size] : [])
    }
  }

  /// The fewest micro-batch sizes from `allowed` that add up to `samples`, larger first
  /// (`nil` when none do).
  package static func compose(samples: Int, from allowed: Set<Int>) -> [Int]? {
    let sizes = allowed.filter { $0 >= 1 && $0 <= samples }.sorted(by: >)
    guard !sizes.isEmpty else { return nil }
    if let largest = sizes.first, samples % largest == 0 {
      return Array(repeating: largest, count: samples / largest)
    }
    // Fewest parts by dynamic programming over the sample counts.
    var parts = [Int](repeating: Int.max, count: samples + 1)
    var last = [Int](repeating: 0, count: samples + 1)
    parts[0] = 0
    for total in 1...samples {
      for size in sizes where size <= total && parts[total - size] != Int.max && parts[total - size] + 1 < parts[total] {
        parts[total] = parts[total - size] + 1
        last[total] = size
      }
    }
    guard parts[samples] != Int.max else { return nil }
    var result: [Int] = []
    var remaining = samples
    while remaining > 0 {
      result.append(last[remaining])
      remaining -= last[remaining]
    }
    return result.sorted(by: >)
  }

  /// Trains for `epochs` epochs in total (a resumed run continues up to that count).
  /// - Throws: ``TrainingError`` for a dataset whose samples do not fit the model, or a
  ///   checkpoint that cannot be written.
  @discardableResult
  public func fit(_ dataset: some Dataset, epochs: Int) throws(TrainingError) -> TrainingReport {
    guard epochs >= 1 else { throw .invalidSetting(name: "epochs", value: "\(epochs)", expected: "an integer ≥ 1") }
    let lengths = dataset.sequenceLengths
    if lengths != nil {
      // Sequences: each micro-batch is planned for its own padded length.
      guard inputShape.count == 1, dataset.sampleShape.count == 1 else {
        throw .invalidSetting(
          name: "dataset sample shape", value: "\(dataset.sampleShape)",
          expected: "sequences for a model whose input is a sequence of ids, not \(inputShape)")
      }
    } else {
      guard dataset.sampleShape == inputShape else {
        throw .invalidSetting(
          name: "dataset sample shape", value: "\(dataset.sampleShape)", expected: "\(inputShape), the model's input")
      }
    }
    guard dataset.count >= 1 else {
      throw .invalidSetting(name: "dataset size", value: "0", expected: "at least 1 sample")
    }
    // Every target, before the first step: a bad label is an error here, not a trap later.
    let outputShape: [Int]
    do {
      outputShape = try model.outputShape(forInput: dataset.sampleShape)
    } catch {
      throw .targets(.shape(error))
    }
    do {
      try loss.checkTargetValues(outputShape: outputShape, targets: dataset.targets(at: Array(0..<dataset.count)))
    } catch {
      throw .targets(error)
    }
    if let lengths { try prepareSequences(lengths: lengths) }
    let world = options.communicator
    if world.size > 1 && progress.microIndex > 0 {
      // A window left unfinished (by a run of one process) is trained again from its start:
      // its partial gradient cannot be shared among processes.
      stepper.discardWindow()
      progress.windowSizes = []
      progress.microIndex = 0
      progress.windowLoss = 0
      progress.windowPeak = 0
    }
    model.setTraining(true)
    let start = Date()
    let secondsBefore = progress.seconds
    /// The report so far, with the time of this call counted.
    func report() -> TrainingReport {
      progress.seconds = secondsBefore + Date().timeIntervalSince(start)
      return worldReport(epochs: epochs)
    }
    while progress.epoch < epochs {
      let order = DataLoader.sampleOrder(
        count: dataset.count, epoch: progress.epoch, shuffle: options.shuffle, seed: options.seed)
      let windowCount = windowCount(sampleCount: dataset.count)
      while progress.window < windowCount {
        let (windowSamples, shares, share) = share(ofWindow: progress.window, order: order, lengths: lengths)
        var windowIndices = Array(share)
        if let lengths {
          // Longest first: each micro-batch is padded to its first sample's length.
          windowIndices = SequencePlanner.lengthOrder(windowIndices, lengths: lengths)
        }
        if progress.windowSizes.isEmpty {
          progress.windowSizes = try windowSizes(indices: windowIndices, lengths: lengths, dataset: dataset)
          progress.windowLoss = 0
          progress.windowPeak = 0
        } else if let lengths, progress.microIndex < progress.windowSizes.count {
          // A resumed window: the rest is composed again unless it fits this run's budget.
          let done = progress.windowSizes[..<progress.microIndex].reduce(0, +)
          let rest = Array(windowIndices[done...])
          if !fitsSequencePlan(progress.windowSizes[progress.microIndex...], indices: rest, lengths: lengths) {
            progress.windowSizes =
              Array(progress.windowSizes[..<progress.microIndex])
              + (try windowSizes(indices: rest, lengths: lengths, dataset: dataset))
          }
        }
        // Rule 3: the whole window's item count, before the first backward (summed over
        // the processes' shares).
        let localItems = windowIndices.isEmpty ? 0 : loss.itemCount(targets: dataset.targets(at: windowIndices))
        let windowItems = world.size > 1 ? Int(world.sum([Double(localItems)])[0]) : localItems
        guard windowItems > 0 else {
          // Nothing to predict (every label ignored): no gradient, no step; reported.
          warn(
            "step \(stepper.stepCount + 1) (epoch \(progress.epoch + 1)): the window's \(windowSamples) samples have no label to predict; the window changes nothing"
          )
          progress.skipWindow()
          continue
        }
        while progress.microIndex < progress.windowSizes.count {
          let offset = progress.windowSizes[..<progress.microIndex].reduce(0, +)
          let size = progress.windowSizes[progress.microIndex]
          let indices = Array(windowIndices[offset..<(offset + size)])
          let (scaled, transient) = TransientPeak.measure {
            stepper.microStep(dataset.batch(at: indices), windowItems: windowItems)
          }
          progress.windowLoss += Double(scaled)
          let peak = estimator.persistent.totalBytes + transient
          progress.windowPeak = max(progress.windowPeak, peak)
          progress.microIndex += 1
          onEvent?(.microStep(samples: size, peakBytes: peak))
          if let lengths, let budget = memoryBudget?.bytes {
            // Sequences: the guard keeps measured (samples, padded length) shapes.
            let paddedLength = lengths[indices[0]]
            if peak > budget {
              progress.violations += 1
              overshoot = (size, peak)
              overshootLength = paddedLength
              let rest = windowIndices[(offset + size)...].map { lengths[$0] }
              let restSizes = SequencePlanner.compose(sortedLengths: rest, capacity: measuredSequenceCapacity)
              guard let restSizes else {
                try stopAfterOvershoot(microBatch: size, peakBytes: peak, budgetBytes: budget, dataset: dataset)
              }
              reportOvershoot(
                microBatch: size, peakBytes: peak, budgetBytes: budget,
                next: restSizes.first ?? measuredSequenceCapacity(paddedLength))
              progress.windowSizes = Array(progress.windowSizes[..<progress.microIndex]) + restSizes
            } else {
              measuredSequenceShapes[paddedLength] = max(measuredSequenceShapes[paddedLength] ?? 0, size)
            }
          } else if let budget = memoryBudget?.bytes, peak > budget {
            progress.violations += 1
            // At most one micro-step goes over: from here on only sizes measured within
            // the budget run; when the rest cannot be made of them, the run stops.
            // (A checkpoint keeps the overshoot, so a run resumed under the same budget
            // keeps to this too.)
            overshoot = (size, peak)
            let rest = windowIndices.count - (offset + size)
            let smaller = measuredWithinBudget.filter { $0 < size }
            let restSizes = rest > 0 ? Self.compose(samples: rest, from: smaller) : []
            guard let nextMicroBatch = smaller.max(), let restSizes else {
              try stopAfterOvershoot(microBatch: size, peakBytes: peak, budgetBytes: budget, dataset: dataset)
            }
            plan.microBatch = nextMicroBatch
            reportOvershoot(microBatch: size, peakBytes: peak, budgetBytes: budget, next: nextMicroBatch)
            progress.windowSizes = Array(progress.windowSizes[..<progress.microIndex]) + restSizes
          } else {
            measuredWithinBudget.insert(size)
          }
          // Together with other processes a run stops only between windows, all at once.
          if world.size == 1 && stopFlag.isSet && progress.microIndex < progress.windowSizes.count {
            _ = report()  // counts this call's time into what the checkpoint saves
            try stop(dataset: dataset)
            return worldReport(epochs: epochs)
          }
        }
        // One reduction of every gradient and the loss: every process then holds the
        // window's gradient, and the checks and the step below agree everywhere.
        let stopAgreed: Bool
        if world.size > 1 {
          let reductionStart = Date()
          let (agreed, reductionPeak) = TransientPeak.measure { reduceWindow(world) }
          progress.reductionSeconds += Date().timeIntervalSince(reductionStart)
          progress.windowPeak = max(progress.windowPeak, estimator.persistent.totalBytes + reductionPeak)
          stopAgreed = agreed
        } else {
          stopAgreed = stopFlag.isSet
        }
        if let problem = stepper.nonFiniteValue(windowLoss: progress.windowLoss, epoch: progress.epoch + 1) {
          stepper.discardWindow()
          switch options.onNonFinite {
          case .stop:
            // The checkpoint resumes at the start of this window.
            progress.windowSizes = []
            progress.microIndex = 0
            progress.windowLoss = 0
            progress.windowPeak = 0
            if let path = options.checkpointPath { try writeCheckpoint(path: path) }
            throw .nonFinite(problem)
          case .skip:
            warn("skipped \(problem)")
            leaderLog?.writeSkipEvent(problem)
            progress.skipWindow()
            continue
          }
        }
        let (learningRate, updatePeak) = TransientPeak.measure { stepper.finishWindow() }
        progress.windowPeak = max(progress.windowPeak, estimator.persistent.totalBytes + updatePeak)
        if world.size > 1 {
          // Rank 0's batch statistics, as DDP broadcasts its buffers; the step's peak is the
          // largest of any process's.
          broadcastBuffers(world)
          progress.windowPeak = Int(world.maximum([Int64(progress.windowPeak)])[0])
        }
        var record = StepRecord(
          step: stepper.stepCount, epoch: progress.epoch + 1, samples: windowSamples, loss: Float(progress.windowLoss),
          learningRate: learningRate, microBatches: progress.windowSizes, peakBytes: progress.windowPeak,
          transientPeakBytes: progress.windowPeak - estimator.persistent.totalBytes)
        if world.size > 1 { record.shares = shares }
        if let lengths {
          record.tokens = windowItems
          var start = 0
          record.paddedLengths = progress.windowSizes.map { size in
            defer { start += size }
            return lengths[windowIndices[start]]
          }
        }
        progress.finishWindow(record)
        leaderLog?.write(record)
        onEvent?(.step(record))
        if let path = options.checkpointPath, stepper.stepCount % max(1, options.checkpointEvery) == 0 {
          try writeCheckpoint(path: path)
        }
        if stopAgreed {
          _ = report()  // counts this call's time into what the checkpoint saves
          try stop(dataset: dataset)
          return worldReport(epochs: epochs)
        }
      }
      let epochLoss = progress.finishEpoch()
      onEvent?(.epoch(number: progress.epoch, loss: epochLoss))
    }
    let final = report()
    if let path = options.checkpointPath { try writeCheckpoint(path: path) }
    leaderLog?.write(final)
    return final
  }

  /// The memory guard's report of a micro-step over the budget after which training goes
  /// on with micro-batches of at most `next` samples.
  func reportOvershoot(microBatch: Int, peakBytes: Int, budgetBytes: Int, next: Int) {
    onEvent?(.overBudget(microBatch: microBatch, peakBytes: peakBytes, budgetBytes: budgetBytes, nextMicroBatch: next))
    leaderLog?.writeGuardEvent(
      epoch: progress.epoch + 1, step: stepper.stepCount + 1, microBatch: microBatch, measuredPeakBytes: peakBytes,
      newMicroBatch: next)
  }

  /// The memory guard's stop: nothing measured within the budget can make the rest, so the
  /// run writes its checkpoint and ends with the error.
  func stopAfterOvershoot(
    microBatch: Int, peakBytes: Int, budgetBytes: Int, dataset: some Dataset
  ) throws(TrainingError) -> Never {
    leaderLog?.writeGuardEvent(
      epoch: progress.epoch + 1, step: stepper.stepCount + 1, microBatch: microBatch, measuredPeakBytes: peakBytes,
      newMicroBatch: 0)
    onEvent?(.overBudget(microBatch: microBatch, peakBytes: peakBytes, budgetBytes: budgetBytes, nextMicroBatch: nil))
    try stop(dataset: dataset)
    throw .budgetExceeded(microBatch: microBatch, peakBytes: peakBytes, budgetBytes: budgetBytes)
  }

  /// The report so far, with the world's size.
  func worldReport(epochs: Int) -> TrainingReport {
    var report = progress.report(epochs: epochs)
    report.worldSize = options.communicator.size
    return report
  }

  /// The log, on the process that writes it (rank 0).
  var leaderLog: TrainingLog? { options.communicator.isLeader ? log : nil }

  /// Sums every gradient and the window's loss over the processes, in one reduction over
  /// ``reductionBuffer``, and agrees on whether to stop after this window (any process
  /// asked) and on the budget violations. Returns whether to stop.
  func reduceWindow(_ world: any Communicator) -> Bool {
    let parameters = model.parameters
    guard let buffer = reductionBuffer else { return stopFlag.isSet }
    let flat = buffer.mutableBuffer
    var offset = 0
    for parameter in parameters {
      if let gradient = parameter.gradient, gradient.hasElements {
        (flat.baseAddress! + offset).update(from: gradient.buffer.baseAddress!, count: parameter.count)
      } else {
        (flat.baseAddress! + offset).update(repeating: 0, count: parameter.count)
      }
      offset += parameter.count
    }
    flat[offset] = Float(progress.windowLoss)
    world.sumInPlace(flat)
    offset = 0
    for parameter in parameters {
      if let gradient = parameter.gradient, gradient.hasElements {
        gradient.mutableBuffer.baseAddress!.update(from: flat.baseAddress! + offset, count: parameter.count)
      }
      offset += parameter.count
    }
    progress.windowLoss = Double(flat[offset])
    let agreed = world.sum([stopFlag.isSet ? 1 : 0, Double(progress.violations)])
    progress.violations = Int(agreed[1])
    return agreed[0] > 0
  }

  /// Copies rank 0's buffers (running statistics) and counters to every process.
  func broadcastBuffers(_ world: any Communicator) {
    for (_, tensor) in model.namedBuffers where tensor.hasElements { world.broadcast(tensor.mutableBuffer, root: 0) }
    let counters = model.namedCounters
    guard !counters.isEmpty else { return }
    let values = world.broadcast(counters.map { $0.counter.value }, root: 0)
    for (index, (_, counter)) in counters.enumerated() { counter.value = values[index] }
  }

  func stop(dataset: some Dataset) throws(TrainingError) {
    if let path = options.checkpointPath { try writeCheckpoint(path: path) }
    progress.interrupted = true
  }

  /// The loss and (for cross-entropy) accuracy of the model on `dataset` in evaluation
  /// mode, in batches of the planned micro-batch, keeping no graph (see
  /// `Layer.evaluate(_:loss:batchSize:)`).
  public func evaluate(_ dataset: some Dataset) -> Evaluation {
    model.evaluate(dataset, loss: loss, batchSize: plan.microBatch)
  }
}

/// A flag one thread sets and another reads.
final class StopFlag: @unchecked Sendable {
  private let lock = NSLock()
  private var value = false
  func set() { lock.withLock { value = true } }
  var isSet: Bool { lock.withLock { value } }
}
