import CFuzzerDriver
import Foundation
import GradAccum

/// Parses arbitrary bytes as JSON Lines and as separated text, and uses what parses: checks
/// it against a small model's vocabulary and positions, truncates it, and pads a batch of
/// every sample.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  let bytes = Data(UnsafeBufferPointer(start: data, count: size))
  for parsed in [
    try? SequenceReader.parseJSONLines(bytes, path: "fuzz.jsonl"),
    try? SequenceReader.parseText(bytes, path: "fuzz.txt", separator: "%"),
  ] {
    guard let parsed else { continue }
    _ = try? parsed.check(vocabularySize: 16, maxLength: 8)
    let short = parsed.truncated(to: 3)
    _ = short.batch(at: Array(0..<min(short.count, 64)))
    _ = parsed.predictedTokenCount
  }
  return 0
}

/// The program's entry point (SwiftPM names it `FuzzSequences_main`): hands control to libFuzzer.
@_cdecl("FuzzSequences_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  var count = argc
  var arguments = argv
  return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzz(data!, size) }
}
