import Tensors

/// A 2-D convolution over NCHW inputs, as PyTorch's `nn.Conv2d` (groups = 1).
///
/// `weight` is `[outputChannels, inputChannels, kernel, kernel]` and `bias` is
/// `[outputChannels]`; initialization is PyTorch's default, uniform in `±1/√fanIn` with
/// `fanIn = inputChannels · kernel²`, for both.
public final class Conv2d: Layer, CustomStringConvertible {
  /// `[outputChannels, inputChannels, kernel, kernel]`.
  public let weight: Tensor
  /// `[outputChannels]`, or `nil` without bias.
  public let bias: Tensor?
  public let stride: Int
  public let padding: Int
  public let dilation: Int

  public var inputChannels: Int { weight.shape[1] }
  public var outputChannels: Int { weight.shape[0] }
  public var kernelSize: Int { weight.shape[2] }

  /// A layer initialized from `generator`.
  public init(
    inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0, dilation: Int = 1,
    bias: Bool = true, generator: inout RandomGenerator
  ) {
    precondition(
      inputChannels > 0 && outputChannels > 0 && kernelSize > 0 && stride > 0 && padding >= 0 && dilation > 0,
      "invalid Conv2d configuration")
    let bound = 1 / Float(inputChannels * kernelSize * kernelSize).squareRoot()
    weight = Tensor(
      uniformShape: [outputChannels, inputChannels, kernelSize, kernelSize], low: -bound, high: bound,
      generator: &generator)
    weight.requiresGradient = true
    if bias {
      let b = Tensor(uniformShape: [outputChannels], low: -bound, high: bound, generator: &generator)
      b.requiresGradient = true
      self.bias = b
    } else {
      self.bias = nil
    }
    self.stride = stride
    self.padding = padding
    self.dilation = dilation
  }

  /// A layer initialized from `seed`, or from the system's entropy when `seed` is `nil`.
  public convenience init(
    inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0, dilation: Int = 1,
    bias: Bool = true, seed: UInt64? = nil
  ) {
    var generator = RandomGenerator(seed: seed ?? UInt64.random(in: .min ... .max))
    self.init(
      inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize, stride: stride,
      padding: padding, dilation: dilation, bias: bias, generator: &generator)
  }

  /// Whether the layer unfolds several samples for one product where one sample's output
  /// plane is small (``samplesPerProduct(plane:)``): faster products for a larger unfolding
  /// workspace. The planner turns it off where the workspace would keep a larger
  /// micro-batch from fitting the budget.
  public var unfoldsSamplesTogether = true

  /// Samples side by side per product for an output plane of `plane` positions: enough for
  /// 64 columns, one from 64 positions up. Measured with OpenBLAS's `sgemm` on one thread
  /// (the AVX-512 kernels), the three products of a convolution over 16-position planes
  /// ran 1.1–2× as fast four samples at a time; over 64 positions and more, several
  /// samples per product were as often slower as faster (benchmarks.md).
  public static func samplesPerProduct(plane: Int) -> Int { max(1, 64 / max(plane, 1)) }

  public func callAsFunction(_ input: Tensor) -> Tensor {
    var perProduct = 1
    if unfoldsSamplesTogether && input.rank == 4 {
      let geometry = WindowGeometry(
        kernelHeight: kernelSize, kernelWidth: kernelSize, stride: stride, padding: padding, dilation: dilation)
      let plane = geometry.outputExtent(input.shape[2], kernel: kernelSize) * geometry.outputExtent(input.shape[3], kernel: kernelSize)
      perProduct = Self.samplesPerProduct(plane: plane)
    }
    return Tensor.convolution2D(
      input, weight: weight, bias: bias, stride: stride, padding: padding, dilation: dilation,
      samplesPerProduct: perProduct)
  }

  public func outputShape(forInput shape: [Int]) throws(ShapeError) -> [Int] {
    guard shape.count == 3 else { throw .rankMismatch(layer: description, expectedRank: 3, actual: shape) }
    guard shape[0] == inputChannels else {
      throw .featureMismatch(layer: description, expected: inputChannels, actual: shape)
    }
    let geometry = WindowGeometry(
      kernelHeight: kernelSize, kernelWidth: kernelSize, stride: stride, padding: padding, dilation: dilation)
    let height = geometry.outputExtent(shape[1], kernel: kernelSize)
    let width = geometry.outputExtent(shape[2], kernel: kernelSize)
    guard height >= 1 && width >= 1 else { throw .windowTooLarge(layer: description, actual: shape) }
    return [outputChannels, height, width]
  }

  public var namedParameters: [(name: String, tensor: Tensor)] {
    [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
  }

  public var description: String {
    var text = "conv2d(\(inputChannels),\(outputChannels),\(kernelSize)"
    if stride != 1 { text += ",stride=\(stride)" }
    if padding != 0 { text += ",padding=\(padding)" }
    if dilation != 1 { text += ",dilation=\(dilation)" }
    if bias == nil { text += ",bias=false" }
    return text + ")"
  }
}

/// Max or average pooling over square windows, as `nn.MaxPool2d` / `nn.AvgPool2d` (no
/// padding; the stride defaults to the kernel).
public final class Pool2d: Layer, CustomStringConvertible {
  /// Which pooling.
  public enum Kind: Sendable { case maximum, average }
  public let kind: Kind
  public let kernelSize: Int
  public let stride: Int

  public init(_ kind: Kind, kernelSize: Int, stride: Int? = nil) {
    precondition(kernelSize > 0 && (stride ?? 1) > 0, "invalid pooling configuration")
    self.kind = kind
    self.kernelSize = kernelSize
    self.stride = stride ?? kernelSize
  }

  public func callAsFunction(_ input: Tensor) -> Tensor {
    kind == .maximum
      ? input.maxPooled2D(kernel: kernelSize, stride: stride)
      : input.averagePooled2D(kernel: kernelSize, stride: stride)
  }

  public func outputShape(forInput shape: [Int]) throws(ShapeError) -> [Int] {
    guard shape.count == 3 else { throw .rankMismatch(layer: description, expectedRank: 3, actual: shape) }
    let height = (shape[1] - kernelSize) / stride + 1, width = (shape[2] - kernelSize) / stride + 1
    guard shape[1] >= kernelSize && shape[2] >= kernelSize else {
      throw .windowTooLarge(layer: description, actual: shape)
    }
    return [shape[0], height, width]
  }

  public var description: String {
    "\(kind == .maximum ? "maxpool2d" : "avgpool2d")(\(kernelSize)\(stride != kernelSize ? ",stride=\(stride)" : ""))"
  }
}

/// Average over each channel's whole plane, as `nn.AdaptiveAvgPool2d(1)`: `[N, C, H, W]`
/// to `[N, C, 1, 1]`.
public final class GlobalAveragePool2d: Layer, CustomStringConvertible {
  public init() {}
  public func callAsFunction(_ input: Tensor) -> Tensor { input.mean(alongAxes: [2, 3], keepingDimensions: true) }
  public func outputShape(forInput shape: [Int]) throws(ShapeError) -> [Int] {
    guard shape.count == 3 else { throw .rankMismatch(layer: description, expectedRank: 3, actual: shape) }
    return [shape[0], 1, 1]
  }
  public var description: String { "adaptiveavgpool2d(1)" }
}

/// Average pooling to a fixed output size, as `nn.AdaptiveAvgPool2d((h, w))`: `[N, C, H, W]`
/// to `[N, C, h, w]`, each output averaging its share of the input (see
/// `Tensor.adaptiveAveragePooled2D`). For an output of 1 × 1, ``GlobalAveragePool2d``.
public final class AdaptiveAvgPool2d: Layer, CustomStringConvertible {
  /// The output's height and width.
  public let outputHeight: Int, outputWidth: Int

  /// - Parameters: the output size, each ≥ 1.
  public init(outputHeight: Int, outputWidth: Int) {
    precondition(outputHeight >= 1 && outputWidth >= 1, "adaptive pooling output must be positive")
    self.outputHeight = outputHeight
    self.outputWidth = outputWidth
  }

  public func callAsFunction(_ input: Tensor) -> Tensor {
    input.adaptiveAveragePooled2D(outputHeight: outputHeight, outputWidth: outputWidth)
  }

  public func outputShape(forInput shape: [Int]) throws(ShapeError) -> [Int] {
    guard shape.count == 3 else { throw .rankMismatch(layer: description, expectedRank: 3, actual: shape) }
    return [shape[0], outputHeight, outputWidth]
  }

  public var description: String {
    outputHeight == outputWidth
      ? "adaptiveavgpool2d(\(outputHeight))" : "adaptiveavgpool2d(\(outputHeight),\(outputWidth))"
  }
}
