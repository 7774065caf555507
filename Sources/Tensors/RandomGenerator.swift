#if canImport(Glibc)
  import Glibc
#endif

/// A seeded pseudo-random generator (SplitMix64): the same seed gives the same stream on
/// every machine, which makes initialization, dropout and shuffling reproducible.
public struct RandomGenerator: RandomNumberGenerator, Sendable, Equatable, Codable {
  /// The whole state; saving and restoring it resumes the stream exactly.
  public var state: UInt64

  /// A generator whose stream is determined by `seed`.
  public init(seed: UInt64) { state = seed }

  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// A uniform `Float` in `[low, high)`.
  public mutating func uniform(_ low: Float, _ high: Float) -> Float {
    // 24 random bits give every representable step of [0, 1) for Float.
    let unit = Float(next() >> 40) * (1.0 / 16_777_216.0)
    return low + (high - low) * unit
  }

  /// A normal `Float` with the given mean and standard deviation (Box–Muller).
  public mutating func normal(mean: Float = 0, standardDeviation: Float = 1) -> Float {
    let u1 = (Double(next() >> 11) + 1) * (1.0 / 9_007_199_254_740_993.0)
    let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    let z = (-2 * Glibc.log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    return mean + standardDeviation * Float(z)
  }
}

extension Tensor {
  /// A tensor of values uniform in `[low, high)`, drawn from `generator`.
  public convenience init(
    uniformShape shape: [Int], low: Float, high: Float, generator: inout RandomGenerator
  ) {
    self.init(uninitializedShape: shape)
    let x = storage.base
    for i in 0..<(hasElements ? count : 0) { x[i] = generator.uniform(low, high) }
  }

  /// A tensor of normal values, drawn from `generator`.
  public convenience init(
    normalShape shape: [Int], mean: Float = 0, standardDeviation: Float = 1,
    generator: inout RandomGenerator
  ) {
    self.init(uninitializedShape: shape)
    let x = storage.base
    for i in 0..<(hasElements ? count : 0) {
      x[i] = generator.normal(mean: mean, standardDeviation: standardDeviation)
    }
  }
}
