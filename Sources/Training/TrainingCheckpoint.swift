import Checkpoints
import Foundation
import NeuralNetwork
import Optimizers
import Planning
import Tensors

/// A checkpoint is one safetensors file: the model's tensors under `model.`, gradients
/// accumulated so far in an unfinished window under `gradient.`, the optimizer's state
/// under `optimizer.<parameter>.<name>`, and in the metadata (`gradaccum.progress`, JSON)
/// the position in the data, the loss bookkeeping, the step counts, the plan's micro-batch
/// and the random generators' states. It is written atomically.
extension Trainer {
  struct CheckpointState: Codable {
    var version = 1
    var progress: TrainingProgress
    var stepCount: Int
    var parameterSteps: [Int?]
    var randomStates: [UInt64]
    var microBatch: Int
    var correctionBytes: Int
    var targetBatch: Int
    var seed: UInt64
  }

  /// Writes the run's state to `path`, atomically.
  public func writeCheckpoint(path: String) throws(TrainingError) {
    let state = CheckpointState(
      progress: progress, stepCount: stepper.stepCount, parameterSteps: optimizer.parameterStates.map { $0?.step },
      randomStates: model.randomStates, microBatch: plan.microBatch, correctionBytes: correctionBytes,
      targetBatch: targetBatch, seed: options.seed)
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
          metadata: ["gradaccum.progress": json, "format": "gradaccum"]), to: path)
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
    guard let json = file.metadata["gradaccum.progress"],
      let state = try? Self.checkpointDecoder.decode(CheckpointState.self, from: Data(json.utf8))
    else {
      throw .checkpoint(
        "\(path) is not a GradAccum checkpoint (no gradaccum.progress metadata); to start from weights alone, use --init"
      )
    }
    guard state.targetBatch == targetBatch else {
      throw .checkpoint("\(path) was written with target batch \(state.targetBatch), not \(targetBatch)")
    }
    guard state.seed == options.seed else {
      throw .checkpoint("\(path) was written with seed \(state.seed), not \(options.seed)")
    }
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
    correctionBytes = state.correctionBytes
    if state.microBatch != plan.microBatch {
      plan.microBatch = state.microBatch
      plan.windowSizes = Plan.balancedSizes(samples: targetBatch, microBatch: state.microBatch)
    }
    progress = state.progress
    progress.interrupted = false
  }
}
