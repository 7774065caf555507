/// The shape of one sample as text: positive extents joined by `x` (`784`, `1x28x28`).
public enum SampleShape {
  /// The most values one sample may have (2^40).
  public static let maximumElements = 1 << 40

  /// The shape `text` writes, or `nil` when it is not positive integers joined by `x` or
  /// has more than ``maximumElements`` values.
  public static func parse(_ text: String) -> [Int]? {
    let parts = text.lowercased().split(separator: "x", omittingEmptySubsequences: false)
    let shape = parts.compactMap { Int($0) }
    guard !parts.isEmpty, shape.count == parts.count, shape.allSatisfy({ $0 >= 1 }),
      let count = checkedElementCount(shape), count <= maximumElements
    else { return nil }
    return shape
  }
}
