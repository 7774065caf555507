import CFuzzerDriver
import GradAccum

/// Parses arbitrary bytes as a safetensors file, reads every tensor it declares, and loads
/// it into a small model. Any outcome but a crash, a hang or an unchecked allocation is fine.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  let bytes = Array(UnsafeBufferPointer(start: data, count: size))
  guard let file = try? SafetensorsFile.parse(bytes, path: "fuzz.safetensors") else { return 0 }
  for name in file.names {
    _ = try? file.floatTensor(name)
    _ = try? file.integerValues(name)
  }
  let model = Sequential { Linear(inputSize: 2, outputSize: 1, seed: 0) }
  try? model.loadState(from: file)
  return 0
}

/// The program's entry point (SwiftPM names it `FuzzSafetensors_main`): hands control to libFuzzer.
@_cdecl("FuzzSafetensors_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  var count = argc
  var arguments = argv
  return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzz(data!, size) }
}
