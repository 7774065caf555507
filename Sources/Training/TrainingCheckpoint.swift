import Checkpoints
import Foundation
import NeuralNetwork
import Optimizers
import Planning
import Tensors

/// A checkpoint is one safetensors file: the model's tensors under `model.`, gradients
/// accumulated so far in an unfinished window under `gradient.`, the optimizer's state
/// under `optimizer.<parameter>.<name>`, and in the metadata (`gradaccum.progress`, JSON)
/// the position in the data, the loss bookkeeping, the step counts, the model and optimizer
/// it was written for, the budget and the random generators' states. It is written
/// atomically, with a checksum over the metadata and every tensor's bytes.
///
/// Resuming checks the checksum, the model, the optimizer, the target batch and the seed,
/// and plans the micro-batch anew for this run's budget (the checkpoint's micro-batch is
/// not trusted: a lower budget must not run the old micro-batch).
extension Trainer {
  struct CheckpointState: Codable {
    var version = 2
    var progress: TrainingProgress
    var stepCount: Int
    var parameterSteps: [Int?]
    var randomStates: [UInt64]
    var microBatch: Int
    var targetBatch: Int
    var seed: UInt64
    /// The model's layers (`linear(4,8) relu …`).
    var model: String
    /// The optimizer (`adam`, `sgd`, …).
    var optimizer: String
    /// The budget (`nil` for a fixed schedule).
    var budgetBytes: Int?
    /// Micro-batch sizes measured within the budget, and the one that went over it, if any:
    /// a run resumed under the same budget keeps to the measured sizes after an overshoot.
    var measuredWithinBudget: [Int]
    var overshoot: [Int]?
    /// Sequence runs only: `[padded length, samples]` shapes measured within the budget, and
    /// the padded length of the micro-step that went over it.
    var measuredSequenceShapes: [[Int]]?
    var overshootLength: Int?
  }

  /// The metadata key of the checkpoint's checksum.
  static let checksumKey = "gradaccum.checksum"

  /// How a checkpoint names the model: its layers' descriptions.
  var modelDescription: String { Planner.layerNames(of: model).joined(separator: " ") }

  /// How a checkpoint names the optimizer: its type.
  var optimizerDescription: String { String(describing: type(of: optimizer)).lowercased() }

  /// Writes the run's state to `path`, atomically (on rank 0 only, when several processes
  /// train together: their state is the same between windows).
  public func writeCheckpoint(path: String) throws(TrainingError) {
    guard options.communicator.isLeader else { return }
    let state = CheckpointState(
      progress: progress, stepCount: stepper.stepCount, parameterSteps: optimizer.parameterStates.map { $0?.step },
      randomStates: model.randomStates, microBatch: plan.microBatch, targetBatch: targetBatch, seed: options.seed,
      model: modelDescription, optimizer: optimizerDescription, budgetBytes: memoryBudget?.bytes,
      measuredWithinBudget: measuredWithinBudget.sorted(), overshoot: overshoot.map { [$0.microBatch, $0.peakBytes] },
      measuredSequenceShapes: trainsSequences ? measuredSequenceShapes.sorted { $0.key < $1.key }.map { [$0.key, $0.value] } : nil,
      overshootLength: overshootLength)
    let encoder = JSONEncoder()
    encoder.nonConformingFloatEncodingStrategy = .convertToString(
      positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    let json: String
    do {
      json = String(decoding: try encoder.encode(state), as: UTF8.self)
    } catch {
      throw .checkpoint("cannot encode the training progress for \(path): \(error)")
    }
    var floats = model.namedState.map { ("model.\($0.name)", $0.tensor) }
    if progress.microIndex > 0 {
      for (name, parameter) in model.namedParameters {
        if let gradient = parameter.gradient { floats.append(("gradient.\(name)", gradient)) }
      }
    }
    floats += optimizer.namedState.map { ("optimizer.\($0.name)", $0.tensor) }
    do {
      try AtomicFile.write(
        SafetensorsFile.encode(
          floats: floats, integers: model.integerState.map { ("model.\($0.name)", $0.values, $0.shape) },
          metadata: ["gradaccum.progress": json, "format": "gradaccum"], checksumKey: Self.checksumKey), to: path)
    } catch {
      throw .checkpoint(error.description)
    }
  }

  static var checkpointDecoder: JSONDecoder {
    let decoder = JSONDecoder()
    decoder.nonConformingFloatDecodingStrategy = .convertFromString(
      positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return decoder
  }

  /// Restores the state a checkpoint at `path` saved, so that ``fit(_:epochs:)`` continues
  /// where that run stopped.
  public func resume(from path: String) throws(TrainingError) {
    let file: SafetensorsFile
    do {
      file = try SafetensorsFile.read(path: path)
    } catch {
      throw .checkpoint(error.description)
    }
    if file.metadata[Self.checksumKey] != nil && !file.hasValidChecksum(key: Self.checksumKey) {
      throw .checkpoint(
        "\(path) is damaged: its checksum does not match its contents (a changed byte in the tensors or the metadata)")
    }
    guard file.metadata[Self.checksumKey] != nil, let json = file.metadata["gradaccum.progress"],
      let state = try? Self.checkpointDecoder.decode(CheckpointState.self, from: Data(json.utf8))
    else {
      throw .notACheckpoint(path: path)
    }
    guard state.model == modelDescription else {
      throw .checkpoint("\(path) was written for the model \"\(state.model)\", not \"\(modelDescription)\"")
    }
    guard state.optimizer == optimizerDescription else {
      throw .checkpoint("\(path) was written with the optimizer \(state.optimizer), not \(optimizerDescription)")
    }
    guard state.targetBatch == targetBatch else {
      throw .checkpoint("\(path) was written with target batch \(state.targetBatch), not \(targetBatch)")
    }
    guard state.seed == options.seed else {
      throw .checkpoint("\(path) was written with seed \(state.seed), not \(options.seed)")
    }
    let expectedOptimizerState = Set(optimizer.namedState.map { "optimizer.\($0.name)" })
    let savedOptimizerState = Set(file.entries.keys.filter { $0.hasPrefix("optimizer.") })
    guard expectedOptimizerState == savedOptimizerState else {
      throw .checkpoint(
        "\(path) holds optimizer state \(savedOptimizerState.sorted()), but this \(optimizerDescription) keeps \(expectedOptimizerState.sorted()) (other hyperparameters, such as momentum or amsgrad?)"
      )
    }
    guard state.progress.microIndex <= state.progress.windowSizes.count,
      state.progress.windowSizes.allSatisfy({ $0 >= 1 }), state.stepCount >= 0, state.progress.epoch >= 0,
      state.progress.window >= 0
    else {
      throw .checkpoint("\(path) has an inconsistent progress record")
    }
    let restored = try resumedWindow(state)
    do {
      for (name, tensor) in model.namedState {
        let saved = try file.floatTensor("model.\(name)")
        guard saved.shape == tensor.shape else {
          throw CheckpointError.shapeMismatch(
            path: path, tensor: "model.\(name)", fileShape: saved.shape, modelShape: tensor.shape)
        }
        tensor.assign(from: saved)
      }
      for (name, counter) in model.namedCounters {
        counter.value = try file.integerValues("model.\(name)").first ?? 0
      }
      for (name, parameter) in model.namedParameters {
        guard let gradient = parameter.gradient else { continue }
        if file.entries["gradient.\(name)"] != nil {
          gradient.assign(from: try file.floatTensor("gradient.\(name)"))
        } else {
          gradient.zeroGradient()
          gradient.mutableBuffer.update(repeating: 0)
        }
      }
      for (name, tensor) in optimizer.namedState {
        tensor.assign(from: try file.floatTensor("optimizer.\(name)"))
      }
    } catch {
      throw .checkpoint("\(error)")
    }
    for (index, step) in state.parameterSteps.enumerated() where index < optimizer.parameterStates.count {
      if let step { optimizer.parameterStates[index]?.step = step }
    }
    stepper.stepCount = state.stepCount
    model.randomStates = state.randomStates
    progress = state.progress
    progress.interrupted = false
    measuredWithinBudget = restored.measured
    overshoot = restored.overshoot
    trainsSequences = state.measuredSequenceShapes != nil
    measuredSequenceShapes = [:]
    overshootLength = nil
    if state.budgetBytes == memoryBudget?.bytes {
      for pair in state.measuredSequenceShapes ?? [] where pair.count == 2 && pair[0] >= 1 && pair[1] >= 1 {
        measuredSequenceShapes[pair[0]] = pair[1]
      }
      overshootLength = state.overshootLength
    }
    progress.windowSizes = restored.windowSizes
    if let budget = memoryBudget?.bytes, state.budgetBytes != budget {
      warn(
        "\(path) was written under \(state.budgetBytes.map { "a budget of \($0) bytes" } ?? "no budget"); this run plans for \(budget): micro-batch \(plan.microBatch)"
      )
    }
  }

  /// What a resumed run keeps of the checkpoint's measurements (under the same budget) and
  /// the sizes of its unfinished window. The plan is this run's, for this budget: the rest
  /// of the window is split again when its sizes do not fit the plan or, after an
  /// overshoot, are not sizes measured within the budget (the window's item count, and so
  /// the arithmetic, is unchanged).
  /// - Throws: ``TrainingError/budgetExceeded(microBatch:peakBytes:budgetBytes:)`` when a
  ///   micro-step went over this budget and the rest cannot be made of measured sizes.
  func resumedWindow(_ state: CheckpointState) throws(TrainingError) -> (
    measured: Set<Int>, overshoot: (microBatch: Int, peakBytes: Int)?, windowSizes: [Int]
  ) {
    var measured: Set<Int> = []
    var overshoot: (microBatch: Int, peakBytes: Int)?
    if state.budgetBytes == memoryBudget?.bytes {
      measured = Set(state.measuredWithinBudget.filter { $0 >= 1 })
      if let saved = state.overshoot, saved.count == 2 { overshoot = (saved[0], saved[1]) }
    }
    let sizes = state.progress.windowSizes, index = state.progress.microIndex
    // Sequence windows are checked against this budget's plan by length when training goes on.
    if state.measuredSequenceShapes != nil { return (measured, overshoot, sizes) }
    let done = Array(sizes[..<index]), remaining = Array(sizes[index...])
    let samples = remaining.reduce(0, +)
    if let overshoot {
      if remaining.allSatisfy(measured.contains) { return (measured, overshoot, sizes) }
      guard let composed = Self.compose(samples: samples, from: measured) else {
        throw .budgetExceeded(
          microBatch: overshoot.microBatch, peakBytes: overshoot.peakBytes, budgetBytes: memoryBudget?.bytes ?? 0)
      }
      return (measured, overshoot, done + composed)
    }
    if remaining.contains(where: { $0 > plan.microBatch }) {
      return (measured, nil, done + Self.windowSizes(samples: samples, schedule: schedule, microBatch: plan.microBatch))
    }
    return (measured, nil, sizes)
  }
}
