import VectorKernels

/// Transcendental functions as straight-line arithmetic (no calls, no branches), so that
/// elementwise loops over them vectorize where the C library's scalar `erff` and `expf`
/// would dominate, and vector helpers for rows (maxima, sums, dot products, adds). The GELU
/// and softmax kernels in `VectorKernels` are these `erf` and `exp` formulas compiled per
/// vector width (tested equal bit for bit).
enum VectorMath {
  /// `erf(x)` as a rational function of `x` on `[-4, 4]` (±1 beyond, where `erf` rounds to
  /// ±1 in single precision): odd numerator of degree 13 over even denominator of degree 8,
  /// the minimax form Eigen uses. Largest absolute error over every float: 4.2e-7 (tested).
  @inline(__always)
  static func erf(_ value: Float) -> Float {
    let x = Swift.min(Swift.max(value, -4), 4)
    let x2 = x * x
    var p: Float = -2.72614225801306e-10
    p = p * x2 + 2.77068142495902e-08
    p = p * x2 - 2.10102402082508e-06
    p = p * x2 - 5.69250639462346e-05
    p = p * x2 - 7.34990630326855e-04
    p = p * x2 - 2.95459980854025e-03
    p = p * x2 - 1.60960333262415e-02
    var q: Float = -1.45660718464996e-05
    q = q * x2 - 2.13374055278905e-04
    q = q * x2 - 1.68282697438203e-03
    q = q * x2 - 7.37332916720468e-03
    q = q * x2 - 1.42647390514189e-02
    return x * p / q
  }

  /// `exp(x)` for `x ≤ 0` (what the normal density needs): `2^n · e^r` with `|r| ≤ ln2/2`
  /// and a degree-7 Taylor polynomial; relative error below 3e-7 down to `x = -87`, and 0
  /// below.
  @inline(__always)
  static func expNonPositive(_ value: Float) -> Float {
    let x = Swift.min(Swift.max(value, -87), 0)
    // n = round(x / ln 2) by the magic-number trick (exact for |n| < 2^22).
    let shifted = x * 1.4426950408889634 + 12_582_912
    let n = shifted - 12_582_912
    let r = x - n * 0.693145751953125 - n * 1.428606765330187e-06
    var p: Float = 1.0 / 5040
    p = p * r + 1.0 / 720
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1
    p = p * r + 1
    // 2^n from the exponent bits: the low bits of `shifted` hold n (n ≥ -126 here).
    let scale = Float(bitPattern: (shifted.bitPattern &- 0x4B40_0000 &+ 127) << 23)
    return value < -87 ? 0 : p * scale
  }

  /// The largest of `count ≥ 1` values, in eight running maxima. A NaN may be passed over
  /// or returned; the softmaxes that call this turn a line holding one into NaN either way.
  static func maximum(_ values: UnsafePointer<Float>, count: Int) -> Float {
    var lanes = (values[0], values[0], values[0], values[0], values[0], values[0], values[0], values[0])
    var i = 0
    while i + 8 <= count {
      let v = values + i
      lanes.0 = v[0] > lanes.0 ? v[0] : lanes.0
      lanes.1 = v[1] > lanes.1 ? v[1] : lanes.1
      lanes.2 = v[2] > lanes.2 ? v[2] : lanes.2
      lanes.3 = v[3] > lanes.3 ? v[3] : lanes.3
      lanes.4 = v[4] > lanes.4 ? v[4] : lanes.4
      lanes.5 = v[5] > lanes.5 ? v[5] : lanes.5
      lanes.6 = v[6] > lanes.6 ? v[6] : lanes.6
      lanes.7 = v[7] > lanes.7 ? v[7] : lanes.7
      i += 8
    }
    var largest = Swift.max(
      Swift.max(Swift.max(lanes.0, lanes.1), Swift.max(lanes.2, lanes.3)),
      Swift.max(Swift.max(lanes.4, lanes.5), Swift.max(lanes.6, lanes.7)))
    while i < count {
      largest = values[i] > largest ? values[i] : largest
      i += 1
    }
    return largest
  }

  /// `target[i] += values[i]` for `i < count`, eight at a time.
  @inline(__always)
  static func add(_ values: UnsafePointer<Float>, into target: UnsafeMutablePointer<Float>, count: Int) {
    var i = 0
    while i &+ 8 <= count {
      let sum =
        UnsafeRawPointer(target + i).loadUnaligned(as: SIMD8<Float>.self)
        + UnsafeRawPointer(values + i).loadUnaligned(as: SIMD8<Float>.self)
      UnsafeMutableRawPointer(target + i).storeBytes(of: sum, as: SIMD8<Float>.self)
      i &+= 8
    }
    while i < count {
      target[i] += values[i]
      i &+= 1
    }
  }

  /// `target[c] = Σ_r values[r·stride + c]` for `c < count`: each column summed over the
  /// `rows` in order, from zero (the same sums, bit for bit, as adding row after row into a
  /// zeroed target), 64 columns at a time in registers so that the sums are not stored and
  /// loaded again for every row.
  static func columnSums(
    _ values: UnsafePointer<Float>, rows: Int, stride: Int, count: Int, into target: UnsafeMutablePointer<Float>
  ) {
    @inline(__always) func load(_ pointer: UnsafePointer<Float>) -> SIMD16<Float> {
      UnsafeRawPointer(pointer).loadUnaligned(as: SIMD16<Float>.self)
    }
    @inline(__always) func store(_ value: SIMD16<Float>, _ pointer: UnsafeMutablePointer<Float>) {
      UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: SIMD16<Float>.self)
    }
    var c = 0
    while c + 64 <= count {
      var (a0, a1, a2, a3) = (SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>())
      var row = values + c
      for _ in 0..<rows {
        a0 += load(row)
        a1 += load(row + 16)
        a2 += load(row + 32)
        a3 += load(row + 48)
        row += stride
      }
      store(a0, target + c)
      store(a1, target + c + 16)
      store(a2, target + c + 32)
      store(a3, target + c + 48)
      c += 64
    }
    while c + 16 <= count {
      var sum = SIMD16<Float>()
      var row = values + c
      for _ in 0..<rows {
        sum += load(row)
        row += stride
      }
      store(sum, target + c)
      c += 16
    }
    while c < count {
      var sum: Float = 0
      for r in 0..<rows { sum += values[r * stride + c] }
      target[c] = sum
      c += 1
    }
  }

  /// `Σ term(i)` for `i < count`, in four running Double sums added at the end (the sums of
  /// a normalization's rows: independent additions pipeline, one chain would wait on each).
  @inline(__always)
  static func doubleSum(_ count: Int, _ term: (Int) -> Double) -> Double {
    var (s0, s1, s2, s3) = (0.0, 0.0, 0.0, 0.0)
    var i = 0
    while i + 4 <= count {
      s0 += term(i)
      s1 += term(i + 1)
      s2 += term(i + 2)
      s3 += term(i + 3)
      i += 4
    }
    while i < count {
      s0 += term(i)
      i += 1
    }
    return (s0 + s1) + (s2 + s3)
  }

  /// `Σ term(row[i])` for `i < count`, as ``doubleSum(_:_:)``.
  @inline(__always)
  static func doubleSum(_ row: UnsafePointer<Float>, count: Int, _ term: (Float) -> Double) -> Double {
    doubleSum(count) { term(row[$0]) }
  }

  /// The sum of `count` values, in 16 lanes.
  static func sum(_ values: UnsafePointer<Float>, count: Int) -> Float {
    var lanes = SIMD16<Float>()
    var i = 0
    while i + 16 <= count {
      lanes += UnsafeRawPointer(values + i).loadUnaligned(as: SIMD16<Float>.self)
      i += 16
    }
    var total = lanes.sum()
    while i < count {
      total += values[i]
      i += 1
    }
    return total
  }

  /// `Σ a[i]·b[i]` over `count` values, in 16 lanes.
  static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
    var lanes = SIMD16<Float>()
    var i = 0
    while i + 16 <= count {
      lanes +=
        UnsafeRawPointer(a + i).loadUnaligned(as: SIMD16<Float>.self)
        * UnsafeRawPointer(b + i).loadUnaligned(as: SIMD16<Float>.self)
      i += 16
    }
    var total = lanes.sum()
    while i < count {
      total += a[i] * b[i]
      i += 1
    }
    return total
  }

  /// `target[i] = exp(scale · values[i] − shift)` for `count` values whose exponents are
  /// ≤ 0 (`shift` is at least their largest), and returns their sum; `target` may be
  /// `values`. ``expNonPositive(_:)`` compiled for the CPU's widest vectors
  /// (`gradaccum_exponentials`, the same bits on every CPU).
  static func exponentials(
    _ values: UnsafePointer<Float>, count: Int, scale: Float, shift: Float, into target: UnsafeMutablePointer<Float>
  ) -> Float {
    gradaccum_exponentials(values, target, count, scale, shift)
    return sum(target, count: count)
  }
}
