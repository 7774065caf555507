import Foundation

/// The one way GradAccum writes JSON: `Codable` values, keys in snake_case, sorted, one
/// line. Logs, `plan --json` and `evaluate --json` all go through it.
public enum JSONOutput {
  /// `value` as one line of JSON.
  public static func line(_ value: some Encodable) -> String {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    // Every value GradAccum encodes is encodable (non-finite numbers are `Null`able).
    return String(decoding: try! encoder.encode(value), as: UTF8.self)
  }
}

/// A value that is written as JSON `null` when absent (a plain optional is left out).
@propertyWrapper
public struct NullWhenAbsent<Value: Encodable & Sendable>: Encodable, Sendable {
  public var wrappedValue: Value?
  public init(wrappedValue: Value?) { self.wrappedValue = wrappedValue }

  public func encode(to encoder: Encoder) throws {
    var container = encoder.singleValueContainer()
    if let wrappedValue { try container.encode(wrappedValue) } else { try container.encodeNil() }
  }
}

extension Float {
  /// The value, or `nil` for NaN and infinities, which JSON cannot hold.
  var jsonNumber: Float? { isFinite ? self : nil }
}
