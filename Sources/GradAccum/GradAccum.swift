// The public API of GradAccum in one import.
@_exported import Accumulation
@_exported import Checkpoints
@_exported import DataParallel
@_exported import DataLoading
@_exported import Memory
@_exported import NeuralNetwork
@_exported import Optimizers
@_exported import Planning
@_exported import Tensors
@_exported import Training
