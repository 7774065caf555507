/// Why a budget cannot be read.
public enum BudgetError: Error, Equatable, Sendable, CustomStringConvertible {
  case empty
  case notASize(text: String)
  case unknownUnit(text: String, unit: String)
  case notPositive(text: String)
  case tooLarge(text: String)

  public var description: String {
    let expected = "expected a size such as 64MB, 64MiB, 64M, 1.5GB, 512KB or 65536 (bytes)"
    switch self {
    case .empty: return "the budget is empty; \(expected)"
    case .notASize(let text): return "budget \"\(text)\" is not a size; \(expected)"
    case .unknownUnit(let text, let unit): return "budget \"\(text)\" has unknown unit \"\(unit)\"; \(expected)"
    case .notPositive(let text): return "budget \"\(text)\" must be more than 0 bytes"
    case .tooLarge(let text):
      return "budget \"\(text)\" is more than \(MemoryBudget.maximumBytes) bytes (1 EiB), more than any machine has"
    }
  }
}

/// A number of bytes that training must fit in.
///
/// Units are binary: `.mb(64)` is 64 MiB = 64 × 2²⁰ bytes, and the strings `64MB`,
/// `64MiB` and `64M` all mean that.
public struct MemoryBudget: Sendable, Hashable, Comparable, CustomStringConvertible {
  /// The budget in bytes, > 0.
  public let bytes: Int

  /// The largest budget: 2^60 bytes (1 EiB). Below it, sums of a few budget-sized byte
  /// counts cannot overflow.
  public static let maximumBytes = 1 << 60

  /// A budget of exactly `bytes` bytes.
  public static func bytes(_ bytes: Int) -> MemoryBudget {
    precondition(bytes > 0, "a budget must be positive, got \(bytes) bytes")
    return MemoryBudget(bytes: Swift.min(bytes, maximumBytes))
  }
  /// `kibibytes` × 1024 bytes.
  public static func kb(_ kibibytes: Double) -> MemoryBudget { scaled(kibibytes, 1 << 10) }
  /// `mebibytes` × 2²⁰ bytes.
  public static func mb(_ mebibytes: Double) -> MemoryBudget { scaled(mebibytes, 1 << 20) }
  /// `gibibytes` × 2³⁰ bytes.
  public static func gb(_ gibibytes: Double) -> MemoryBudget { scaled(gibibytes, 1 << 30) }

  static func scaled(_ value: Double, _ unit: Int) -> MemoryBudget {
    let bytes = (value * Double(unit)).rounded(.down)
    precondition(bytes >= 1 && bytes < 9.2e18, "a budget must be a positive number of bytes, got \(value) × \(unit)")
    return MemoryBudget(bytes: Swift.min(Int(bytes), maximumBytes))
  }

  init(bytes: Int) { self.bytes = bytes }

  /// Reads `64MB`, `64MiB`, `64M`, `1.5GB`, `512KB`, `512k`, `65536` or `65536B`
  /// (case-insensitive; binary units).
  /// - Throws: ``BudgetError`` for empty text, a bad number, an unknown unit, zero,
  ///   negative or overflowing sizes.
  public init(parsing text: String) throws(BudgetError) {
    let trimmed = text.trimmingCharacters(in: " \t\n")
    guard !trimmed.isEmpty else { throw .empty }
    let numeric: Set<Character> = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", ".", "-", "+"]
    let numberText = String(trimmed.prefix { numeric.contains($0) })
    let unitText = String(trimmed.dropFirst(numberText.count)).trimmingCharacters(in: " \t").lowercased()
    guard let value = Double(numberText), value.isFinite else { throw .notASize(text: text) }
    let units: [String: Int] = [
      "": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
      "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
    ]
    guard let unit = units[unitText] else { throw .unknownUnit(text: text, unit: unitText) }
    guard value > 0 else { throw .notPositive(text: text) }
    let bytes = (value * Double(unit)).rounded(.down)
    guard bytes <= Double(Self.maximumBytes) else { throw .tooLarge(text: text) }
    guard bytes >= 1 else { throw .notPositive(text: text) }
    self.bytes = Int(bytes)
  }

  /// The budget in MiB.
  public var mebibytes: Double { Double(bytes) / 1_048_576 }

  public var description: String { MemoryBudget.format(bytes: bytes) }

  /// Bytes in the unit that suits their size, binary, with two decimals: `512 bytes`,
  /// `117.19 KiB`, `64.00 MiB`, `1.50 GiB` (two values a few KiB apart print apart).
  public static func format(bytes: Int) -> String {
    let magnitude = bytes.magnitude
    if magnitude < 1024 { return "\(bytes) bytes" }
    let (unit, name): (Double, String) =
      magnitude < 1 << 20 ? (1024, "KiB") : magnitude < 1 << 30 ? (1_048_576, "MiB") : (1_073_741_824, "GiB")
    let hundredths = Int((Double(bytes) / unit * 100).rounded())
    let fraction = abs(hundredths % 100)
    return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction) \(name)"
  }

  public static func < (a: MemoryBudget, b: MemoryBudget) -> Bool { a.bytes < b.bytes }
}

extension String {
  fileprivate func trimmingCharacters(in characters: String) -> String {
    let set = Set(characters)
    return String(drop { set.contains($0) }.reversed().drop { set.contains($0) }.reversed())
  }
}
