import Tensors

extension Layer {
  /// Runs the layer on `input` keeping only `input` for backward (activation
  /// checkpointing): the forward pass records nothing, and the backward pass runs the layer
  /// again from `input` and back-propagates through that recomputed graph.
  ///
  /// The result is the plain forward's, bit for bit: the recomputed forward starts from
  /// the random state the first one started from (the same dropout masks), and running
  /// statistics and counters are put back afterwards (not updated twice). The layer's
  /// parameter gradients accumulate during the recomputed backward.
  /// - Parameter forward: the layer's plain forward pass (by default, calling the layer).
  public func recomputing(_ input: Tensor, through forward: ((Tensor) -> Tensor)? = nil) -> Tensor {
    let forward = forward ?? { self($0) }
    let randomBefore = randomStates
    let output = GradientRecording.withoutRecording { forward(input) }
    let parameters = self.parameters
    guard !GradientRecording.isPaused, input.isDifferentiable || parameters.contains(where: \.isDifferentiable) else {
      return output
    }
    return Tensor.recordRecomputation(output, input: input, parameters: parameters) { gradient in
      // The same random draws as the first forward; after it, the state that forward left
      // (and the running statistics and counters not updated twice).
      let after = LayerRunningState(of: self)
      self.randomStates = randomBefore
      defer { after.restore() }
      // The input's gradient is whatever tensor backward brings to the replayed input
      // (no buffer of its own); the recomputed output is not kept through backward.
      var inputGradient: Tensor?
      let replayed = input.isDifferentiable ? input.capturingGradient { inputGradient = $0 } : input.detached()
      forward(replayed).backward(seed: gradient)
      return inputGradient
    }
  }
}
