import ArgumentParser
import Dispatch
import Foundation
import GradAccum

struct TrainCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train",
    abstract: "Train a model on a CSV file, with exact gradient accumulation.",
    discussion: """
      Automatic mode: --target-batch T --budget SIZE plans the largest micro-batch that fits \
      in the budget and accumulates ⌈T/M⌉ balanced micro-batches per optimizer step, checking \
      every micro-step's measured peak against the budget. Manual mode: --batch N samples per \
      micro-batch, --accumulate K per step. Either way each micro-batch's loss is scaled by \
      its share of its window, so every step, the last partial window included, follows the \
      gradient of its window's mean loss.
      """)

  @OptionGroup var dataOptions: DataOptions

  @OptionGroup var modelOptions: ModelOptions

  @OptionGroup var lossOptions: LossOptions

  @OptionGroup var optimizerOptions: OptimizerOptions

  @OptionGroup var budgetOptions: BudgetOptions

  @Option(parsing: .unconditional, help: "Epochs to train (in total, when resuming).")
  var epochs: Int

  @Option(parsing: .unconditional, help: "Automatic mode: samples per optimizer step.")
  var targetBatch: Int?

  @Option(parsing: .unconditional, help: "Manual mode: samples per micro-batch.")
  var batch: Int?

  @Option(parsing: .unconditional, help: "Manual mode: micro-batches per optimizer step (default 1).")
  var accumulate: Int?

  @Option(parsing: .unconditional, help: "Clip the accumulated gradient to this global L2 norm before each step.")
  var clipGradNorm: Float?

  @Option(
    parsing: .unconditional,
    help: "Hold out this fraction of the data (a seeded draw) and report its loss and accuracy after every epoch.")
  var validationSplit: Double?

  @Flag(help: "Visit samples in file order instead of a seeded shuffle per epoch.")
  var noShuffle = false

  @Flag(help: "Drop an epoch's last window when it holds fewer samples than the others.")
  var dropLast = false

  @Option(parsing: .unconditional, help: "Seed for initialization, shuffling and dropout.")
  var seed: UInt64 = 0

  @Option(name: .customLong("init"), help: "Initial weights: a safetensors file with PyTorch's state_dict names.")
  var initial: String?

  @Option(help: "Write the final weights to this safetensors file.")
  var save: String?

  @Option(help: "Write one JSON object per optimizer step, then a summary, to this file.")
  var log: String?

  @Option(help: "Write a checkpoint (model, optimizer, progress) to this file.")
  var checkpoint: String?

  @Option(parsing: .unconditional, help: "Optimizer steps between checkpoints (default 100).")
  var checkpointEvery: Int = 100

  @Option(help: "Continue the run saved in this checkpoint.")
  var resume: String?

  @Option(
    help: "On a NaN or infinite loss or gradient: stop (with a checkpoint, in automatic mode) or skip the window.")
  var onNonfinite: NonFinitePolicy = .stop

  @Option(
    help:
      "Segments (transformer blocks, convolution stages) recompute their activations in backward: none, all, selective (transformer blocks recompute only their attention weights and GELU outputs), or auto (the segments and micro-batch the planner predicts to train fastest within the budget; for sequences, at the longest sample).")
  var recompute: RecomputePolicy = .none

  @Flag(help: "Print nothing but errors.")
  var quiet = false

  var budget: String? { budgetOptions.budget }
  /// The processes training together: MPI's world under `mpirun`, else this one alone.
  var world: any Communicator { CommandWorld.current }
  /// Only rank 0 prints (and with --quiet, nobody).
  var silent: Bool { quiet || !world.isLeader }
  var isAutomatic: Bool { targetBatch != nil || budget != nil }

  func validate() throws {
    guard epochs >= 1 else { throw UsageError("--epochs is \(epochs), expected an integer ≥ 1") }
    if isAutomatic {
      if batch != nil || accumulate != nil {
        throw UsageError(
          "--batch/--accumulate (manual mode) and --target-batch/--budget (automatic mode) cannot be mixed: the planner chooses the micro-batch from the budget"
        )
      }
      guard let targetBatch, budget != nil else {
        throw UsageError("automatic mode needs both --target-batch and --budget")
      }
      guard targetBatch >= 1 else { throw UsageError("--target-batch is \(targetBatch), expected an integer ≥ 1") }
    } else {
      guard let batch else {
        throw UsageError("give --target-batch and --budget (automatic mode) or --batch (manual mode)")
      }
      guard batch >= 1 else { throw UsageError("--batch is \(batch), expected an integer ≥ 1") }
      if let accumulate, accumulate < 1 { throw UsageError("--accumulate is \(accumulate), expected an integer ≥ 1") }
    }
    guard checkpointEvery >= 1 else {
      throw UsageError("--checkpoint-every is \(checkpointEvery), expected an integer ≥ 1")
    }
    if let clipGradNorm, !(clipGradNorm > 0) {
      throw UsageError("--clip-grad-norm is \(clipGradNorm), expected a value > 0")
    }
  }

  func run() throws {
    let specification = try modelOptions.parsedModel()
    let optimizer = try optimizerOptions.makeOptimizer()
    let budget = try budgetOptions.parsedBudget()
    // Shapes, the budget and the plan are checked on a shape-only model, before any
    // parameter is allocated.
    let shapeModel = try shapeOnlyModel(specification, seed: seed)
    let loss: Loss
    let dataset: any Dataset
    var validation: (any Dataset)?
    let options: TrainerOptions
    if dataOptions.isSequenceData {
      let sequences = dataOptions.sequenceOptions
      loss = try SequenceOptions.loss(lossOptions.loss)
      var data = try sequences.load(path: dataOptions.data)
      try sequences.check(data, model: shapeModel, path: dataOptions.data)
      if let validationSplit {
        let split = try userFacing { try data.splitting(validationFraction: validationSplit, seed: seed) }
        data = split.training
        validation = split.validation
      }
      options = trainerOptions(inputShape: nil)
      if let targetBatch, let budget {
        // Whether the longest sample fits at all: with recomputation, in the least memory it
        // takes (every segment, lean), which the trainer's own choice never exceeds.
        if recompute == .selective {
          RecomputePolicy.apply(.selective, to: shapeModel)
        } else if recompute != .none {
          RecomputePolicy.apply(RecomputePolicy.segments(of: shapeModel), lean: true, to: shapeModel)
        }
        let planner = try userFacing {
          try SequencePlanner(
            model: shapeModel, loss: loss, optimizer: optimizer, targetBatch: targetBatch, budget: budget)
        }
        try sequences.checkFit(data, planner: planner, path: dataOptions.data)
      }
      dataset = data
    } else {
      loss = lossOptions.loss.loss
      var data = try dataOptions.load(loss: loss, inputShape: try modelOptions.parsedInputShape())
      if let validationSplit {
        let split = try userFacing { try data.splitting(validationFraction: validationSplit, seed: seed) }
        data = split.training
        validation = split.validation
      }
      try checkCompatible(model: shapeModel, loss: loss, dataset: data, path: dataOptions.data)
      options = trainerOptions(inputShape: data.sampleShape)
      dataset = data
    }
    if let targetBatch, let budget {
      // Refused before any parameter exists, from shapes alone: the micro-steps' memory (with
      // several processes, the trainer then measures and checks its reduction as well).
      var alone = options
      alone.communicator = SingleProcess()
      _ = try userFacing {
        try Trainer.plan(
          model: shapeModel, optimizer: optimizer, loss: loss, targetBatch: targetBatch, memoryBudget: budget,
          options: alone)
      }
    }
    // Where the outputs go is checked now rather than after hours of training; the log is
    // created only once the run is sure to start.
    for path in [save, log].compactMap({ $0 }) { try checkWritable(path) }
    let model = specification.build(seed: seed)
    if let initial { try userFacing { try model.loadState(path: initial) } }
    let trainer = try userFacing {
      if let targetBatch, let budget {
        try Trainer(
          model: model, optimizer: optimizer, loss: loss, targetBatch: targetBatch, memoryBudget: budget,
          options: options)
      } else {
        try Trainer(
          model: model, optimizer: optimizer, loss: loss, microBatch: batch!, accumulationCount: accumulate ?? 1,
          options: options)
      }
    }
    if let resume {
      try userFacing { try trainer.resume(from: resume) }
      if trainer.completedEpochs >= epochs {
        // Nothing to train: say so, and how to go on (--epochs counts the total).
        if !silent {
          print(
          "\(resume) already finished \(trainer.completedEpochs) epoch\(trainer.completedEpochs == 1 ? "" : "s"), and --epochs \(epochs) counts the total: nothing to train; give --epochs \(trainer.completedEpochs + 1) or more to continue"
          )
        }
        if let save, world.isLeader { try userFacing { try model.saveState(path: save) } }
        return
      }
    }
    try requireMemoryMeasurement()
    if world.isLeader {
      trainer.log = try log.map { path in try userFacing { try TrainingLog(path: path, budgetBytes: budget?.bytes) } }
    }
    // What MPI allocates in the reduction differs by rank: the largest (every rank asks).
    let reductionWorkspace = world.size > 1 ? Int(world.maximum([Int64(trainer.reductionWorkspaceBytes)])[0]) : 0
    if !silent {
      print(
        "training \(specification) on \(dataset.count) samples from \(dataOptions.data): \(epochs) epochs, \(optimizer.name)"
      )
      if world.size > 1 {
        print(
          "data parallel: \(world.size) processes, each with its own budget and its share of every window; one reduction of \(formatBytes(4 * PersistentMemory.communicationElements(model.parameters))) per window (MPI allocates up to \(reductionWorkspace) bytes inside it, the most of any process)"
        )
      }
      if budget != nil, let sequencePlan = try userFacing({ try trainer.sequencePlan(for: dataset) }) {
        print(sequencePlan.summary)
        if trainer.recomputes {
          print("recompute         \(trainer.recomputeDescription)")
        }
      } else if budget != nil {
        print(trainer.plan)
        if trainer.recomputes {
          print("recompute            \(trainer.recomputeDescription)")
        }
      } else {
        print("micro-batch \(batch!), \(accumulate ?? 1) per step (windows of \(trainer.targetBatch))")
      }
      print("")
    }
    let report = try train(trainer, dataset: dataset, validation: validation)
    if !silent && report.worldSize > 1 && report.steps > 0 {
      print(
        String(
          format: "gradient reduction: %.3f ms per optimizer step (rank 0), %d processes", 1000 * report.reductionSeconds / Double(report.steps),
          report.worldSize))
    }
    if !silent {
      print(
        "\(report.steps) optimizer steps, \(String(format: "%.0f", report.samplesPerSecond)) samples/s, max measured peak \(formatBytes(report.maxPeakBytes))\(budget.map { " of \(formatBytes($0.bytes))" } ?? ""), \(report.budgetViolations) budget violations"
      )
    }
    if let save, world.isLeader {
      try userFacing { try model.saveState(path: save) }
      if !silent { print("saved weights to \(save)") }
    }
  }

  /// The trainer's options from the flags.
  func trainerOptions(inputShape: [Int]?) -> TrainerOptions {
    var options = TrainerOptions()
    options.shuffle = !noShuffle
    options.seed = seed
    options.dropLast = dropLast
    options.gradientClipNorm = clipGradNorm
    options.inputShape = inputShape
    options.checkpointPath = checkpoint
    options.checkpointEvery = checkpointEvery
    options.onNonFinite = onNonfinite
    options.communicator = world
    options.recompute = recompute
    return options
  }

  /// Runs the trainer's epochs with progress on standard output; Ctrl-C finishes the
  /// current micro-step, writes the checkpoint and exits cleanly.
  func train(_ trainer: Trainer, dataset: any Dataset, validation: (any Dataset)?) throws -> TrainingReport {
    let stepsPerEpoch = trainer.windowCount(sampleCount: dataset.count)
    let progress = ProgressDisplay(
      quiet: silent, epochs: epochs, stepsPerEpoch: stepsPerEpoch, budgetBytes: trainer.memoryBudget?.bytes)
    trainer.onEvent = { event in
      switch event {
      case .step(let record): progress.step(record)
      case .epoch(let number, let loss):
        // Held-out samples in evaluation mode, in batches of the planned micro-batch.
        let evaluation = validation.map { trainer.evaluate($0) }
        if let evaluation { trainer.log?.writeValidation(epoch: number, evaluation) }
        progress.epoch(number, loss, validation: evaluation)
      default:
        if world.isLeader, let message = event.message { FileHandle.standardError.write(Data("warning: \(message)\n".utf8)) }
      }
    }
    signal(SIGINT, SIG_IGN)
    let interrupt = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
    interrupt.setEventHandler { trainer.requestStop() }
    interrupt.resume()
    defer {
      interrupt.cancel()
      signal(SIGINT, SIG_DFL)
    }
    let report = try userFacing { try trainer.fit(dataset, epochs: epochs) }
    progress.finish()
    if report.interrupted {
      let message =
        checkpoint.map { "interrupted: checkpoint written to \($0); continue with --resume \($0)" }
        ?? "interrupted (no --checkpoint was given, so progress is not saved)"
      FileHandle.standardError.write(Data("\(message)\n".utf8))
    }
    return report
  }
}

/// Bytes in the unit that suits them, with the exact count: `115.77 KiB (118552 bytes)`.
func formatBytes(_ bytes: Int) -> String { "\(MemoryBudget.format(bytes: bytes)) (\(bytes) bytes)" }

/// Progress on standard output: on a terminal a live line per step (epoch, step, window
/// loss, samples/s, measured peak against budget, time left); otherwise a line per epoch.
final class ProgressDisplay {
  let quiet: Bool
  let epochs: Int
  let stepsPerEpoch: Int
  let budgetBytes: Int?
  let isTerminal = isatty(STDOUT_FILENO) != 0
  let start = Date()
  var samples = 0
  var steps = 0
  var liveLine = false

  init(quiet: Bool, epochs: Int, stepsPerEpoch: Int, budgetBytes: Int?) {
    self.quiet = quiet
    self.epochs = epochs
    self.stepsPerEpoch = stepsPerEpoch
    self.budgetBytes = budgetBytes
  }

  func step(_ record: StepRecord) {
    samples += record.samples
    steps += 1
    guard !quiet, isTerminal else { return }
    let elapsed = Date().timeIntervalSince(start)
    let rate = elapsed > 0 ? Double(samples) / elapsed : 0
    let remainingSteps = max(0, epochs * stepsPerEpoch - record.step)
    let eta = steps > 0 ? elapsed / Double(steps) * Double(remainingSteps) : 0
    let peak = MemoryBudget.format(bytes: record.peakBytes) + (budgetBytes.map { " / \(MemoryBudget.format(bytes: $0))" } ?? "")
    let line = String(
      format: "epoch %d/%d  step %d  loss %.6f  %.0f samples/s  peak %@  ETA %d:%02d", record.epoch, epochs,
      record.step, record.loss, rate, peak, Int(eta) / 60, Int(eta) % 60)
    print("\r\u{1B}[2K" + line, terminator: "")
    fflush(nil)
    liveLine = true
  }

  func epoch(_ epoch: Int, _ loss: Float, validation: Evaluation? = nil) {
    guard !quiet else { return }
    if liveLine { print("") }
    liveLine = false
    var line = "epoch \(epoch)/\(epochs)  loss \(loss)"
    if let validation, validation.tokenCount == 0 {
      line += "  validation: no predicted token"
    } else if let validation {
      line += "  validation loss \(validation.loss)"
      if let accuracy = validation.accuracy { line += String(format: ", accuracy %.1f%%", 100 * accuracy) }
    }
    print(line)
  }

  func finish() {
    if liveLine && !quiet { print("") }
    liveLine = false
  }
}
