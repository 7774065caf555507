import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Runs the built `gradaccum` executable, which sits beside the test bundle.
public enum CommandRunner {
  /// The result of one run.
  public struct Result {
    public let status: Int32
    public let output: String
    public let error: String
    /// Whether the process ended by a signal (a crash) rather than exiting.
    public let crashed: Bool
  }

  /// The `gradaccum` executable of this build.
  public static var executable: URL {
    let directory =
      Bundle.main.executableURL?.deletingLastPathComponent()
      ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    return directory.appendingPathComponent("gradaccum")
  }

  /// Runs `gradaccum` with `arguments` (and extra environment variables) and waits for it.
  public static func run(
    _ arguments: [String], environment: [String: String] = [:], directory: URL? = nil
  ) throws -> Result {
    try run(executable: executable, arguments, environment: environment, directory: directory)
  }

  /// Runs `gradaccum` with `arguments` in `processes` processes started by Open MPI's
  /// `mpirun` (oversubscribed: more processes than cores are fine; as root, allowed).
  public static func runParallel(
    processes: Int, _ arguments: [String], environment: [String: String] = [:], directory: URL? = nil
  ) throws -> Result {
    let launcher = ["--oversubscribe", "-np", "\(processes)"] + (getuid() == 0 ? ["--allow-run-as-root"] : [])
    return try run(
      executable: URL(fileURLWithPath: "/usr/bin/mpirun"), launcher + [executable.path] + arguments,
      environment: environment, directory: directory)
  }

  /// Runs `executable` with `arguments` and waits for it.
  public static func run(
    executable: URL, _ arguments: [String], environment: [String: String] = [:], directory: URL? = nil
  ) throws -> Result {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = directory }
    if !environment.isEmpty {
      process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let output = Pipe(), error = Pipe()
    process.standardOutput = output
    process.standardError = error
    try process.run()
    // Read before waiting so a full pipe cannot block the child.
    let outputData = readAll(output.fileHandleForReading.fileDescriptor)
    let errorData = readAll(error.fileHandleForReading.fileDescriptor)
    process.waitUntilExit()
    return Result(
      status: process.terminationStatus, output: String(decoding: outputData, as: UTF8.self),
      error: String(decoding: errorData, as: UTF8.self), crashed: process.terminationReason == .uncaughtSignal)
  }

  /// Everything until end of file from `descriptor`, retrying reads a signal interrupted
  /// (the test process runs many children, and FileHandle traps on `EINTR`).
  public static func readAll(_ descriptor: Int32) -> Data {
    var data = Data()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
      let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
      if count > 0 {
        data.append(contentsOf: buffer[0..<count])
      } else if count == 0 || errno != EINTR {
        return data
      }
    }
  }

  /// The records of a JSON Lines training log (`--log`), one object a line, in order.
  public static func logRecords(at path: String) throws -> [[String: Any]] {
    try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
      try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }
  }

  /// A new empty directory for one test's files.
  public static func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("gradaccum-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
  }
}
