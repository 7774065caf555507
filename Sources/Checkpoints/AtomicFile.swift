import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Writes files so that a crash never leaves a half-written one: the bytes go to a
/// temporary file beside the target (`NAME.partial-PID`), which is flushed to disk and then
/// renamed over it. Temporary files that a killed process left beside the target are
/// removed on the next write.
public enum AtomicFile {
  /// Replaces the file at `path` with `bytes`, atomically.
  /// - Throws: ``CheckpointError/fileNotWritable(path:reason:)``.
  public static func write(_ bytes: [UInt8], to path: String) throws(CheckpointError) {
    removeStalePartialFiles(of: path)
    let temporary = path + ".partial-\(getpid())"
    let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard descriptor >= 0 else { throw .fileNotWritable(path: path, reason: String(cString: strerror(errno))) }
    var written = 0
    let failure: String? = bytes.withUnsafeBytes { raw -> String? in
      while written < raw.count {
        let result = Glibc.write(descriptor, raw.baseAddress! + written, raw.count - written)
        if result < 0 {
          if errno == EINTR { continue }
          return String(cString: strerror(errno))
        }
        written += result
      }
      return fsync(descriptor) == 0 ? nil : String(cString: strerror(errno))
    }
    close(descriptor)
    if let failure {
      unlink(temporary)
      throw .fileNotWritable(path: path, reason: failure)
    }
    guard rename(temporary, path) == 0 else {
      let reason = String(cString: strerror(errno))
      unlink(temporary)
      throw .fileNotWritable(path: path, reason: reason)
    }
  }

  /// Removes `path.partial-PID` files whose process no longer runs.
  static func removeStalePartialFiles(of path: String) {
    let url = URL(fileURLWithPath: path)
    let prefix = url.lastPathComponent + ".partial-"
    let directory = url.deletingLastPathComponent().path
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
    for name in names where name.hasPrefix(prefix) {
      guard let pid = Int32(name.dropFirst(prefix.count)), pid > 0, pid != getpid() else { continue }
      if kill(pid, 0) != 0 && errno == ESRCH { unlink(directory + "/" + name) }
    }
  }
}
