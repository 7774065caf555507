import CFuzzerDriver
import GradAccum

/// Parses arbitrary text as a model specification; builds it shape-only when it parses, and
/// asks it for the output shape of a small input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
  guard let specification = try? ModelSpecification(parsing: text) else { return 0 }
  let model = ShapeTracing.run(AllocationTrace()) { specification.build(seed: 0) }
  _ = try? model.outputShape(forInput: [4])
  return 0
}

/// The program's entry point (SwiftPM names it `FuzzModelSpecification_main`): hands control to libFuzzer.
@_cdecl("FuzzModelSpecification_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  var count = argc
  var arguments = argv
  return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzz(data!, size) }
}
