/// `text` as it goes into an error message: at most `limit` characters, the middle
/// replaced by `…` (so a 5 MB cell does not make a 5 MB message), control characters
/// escaped (a NUL byte shows as `\0`).
package func abbreviated(_ text: some StringProtocol, limit: Int = 80) -> String {
  var escaped = ""
  for scalar in text.unicodeScalars {
    if escaped.unicodeScalars.count > limit * 2 { break }
    switch scalar {
    case "\0": escaped += "\\0"
    case "\n": escaped += "\\n"
    case "\r": escaped += "\\r"
    case "\t": escaped += "\\t"
    case _ where scalar.value < 0x20: escaped += "\\u{\(String(scalar.value, radix: 16))}"
    default: escaped.unicodeScalars.append(scalar)
    }
  }
  let characters = Array(escaped)
  let total = text.unicodeScalars.count
  guard characters.count > limit || total > limit * 2 else { return escaped }
  let half = (limit - 1) / 2
  let tail = text.suffix(half)
  return String(characters.prefix(half)) + "…" + String(tail) + " (\(text.utf8.count) bytes)"
}

/// The number of elements of `shape`, or `nil` when it overflows or an extent is negative.
package func checkedElementCount(_ shape: [Int]) -> Int? {
  var count = 1
  for extent in shape {
    guard extent >= 0 else { return nil }
    let (product, overflow) = count.multipliedReportingOverflow(by: extent)
    guard !overflow else { return nil }
    count = product
  }
  return count
}
