#if canImport(Glibc)
  import Glibc
#endif

/// How much memory this process can have at most, to refuse work that could never fit
/// before allocating any of it.
public enum MachineMemory {
  /// Physical memory.
  public static var physicalBytes: Int {
    Int(sysconf(Int32(_SC_PHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE)))
  }

  /// The smaller of physical memory and the process's address-space and data-segment
  /// limits (`ulimit -v`, `ulimit -d`), when set.
  public static var limitBytes: Int {
    var limit = physicalBytes
    for resource in [RLIMIT_AS, RLIMIT_DATA] {
      var value = rlimit()
      if getrlimit(__rlimit_resource_t(resource.rawValue), &value) == 0 && value.rlim_cur != rlim_t.max {
        limit = min(limit, Int(clamping: value.rlim_cur))
      }
    }
    return limit
  }

  /// Why the file at `path` should not be read whole into memory, or `nil`: it is not a
  /// regular file (a device such as `/dev/zero`, a pipe, a directory), or it is larger
  /// than ``limitBytes`` divided by `copies` (how many times its size reading it takes).
  public static func wholeFileProblem(path: String, copies: Int) -> String? {
    var status = stat()
    guard stat(path, &status) == 0 else { return nil }  // the reader reports a missing file
    guard (status.st_mode & S_IFMT) == S_IFREG else { return "not a regular file" }
    let bytes = Int(status.st_size)
    let limit = limitBytes / max(copies, 1)
    guard bytes <= limit else {
      return "it has \(bytes) bytes, more than this process can read into memory (\(limit) bytes: 1/\(copies) of \(limitBytes))"
    }
    return nil
  }
}
