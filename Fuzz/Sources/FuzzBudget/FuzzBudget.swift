import CFuzzerDriver
import GradAccum

/// Parses arbitrary text as a memory budget.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
  if let budget = try? MemoryBudget(parsing: text) {
    precondition(budget.bytes > 0, "a parsed budget must be positive")
  }
  return 0
}

/// The program's entry point (SwiftPM names it `FuzzBudget_main`): hands control to libFuzzer.
@_cdecl("FuzzBudget_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  var count = argc
  var arguments = argv
  return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzz(data!, size) }
}
