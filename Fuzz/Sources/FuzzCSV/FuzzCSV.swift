import CFuzzerDriver
import GradAccum

/// Parses arbitrary text as a CSV data set, with class and value labels.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
  _ = try? CSVReader.parse(text, path: "fuzz.csv", labelKind: .classIndex)
  _ = try? CSVReader.parse(text, path: "fuzz.csv", labelColumn: "0", labelKind: .value, inputShape: [1, 2])
  return 0
}

/// The program's entry point (SwiftPM names it `FuzzCSV_main`): hands control to libFuzzer.
@_cdecl("FuzzCSV_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  var count = argc
  var arguments = argv
  return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzz(data!, size) }
}
