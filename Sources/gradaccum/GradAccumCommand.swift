import ArgumentParser
import Foundation
import GradAccum

@main
struct GradAccumCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "gradaccum",
    abstract: "Train neural networks under a memory budget with exact gradient accumulation.",
    subcommands: [PlanCommand.self, TrainCommand.self, EvaluateCommand.self, GenerateCommand.self, BenchCommand.self, DemoCommand.self])

  /// Runs the command line. Help goes to standard output; any error is one line on
  /// standard error with a non-zero exit status.
  static func main() {
    useSuitableKernels()
    CommandWorld.join()
    let world = CommandWorld.current
    // Under mpirun every process runs the command; rank 0 speaks for them on standard output.
    if !world.isLeader {
      let null = open("/dev/null", O_WRONLY)
      if null >= 0 { dup2(null, STDOUT_FILENO) }
    }
    do {
      var command = try parseAsRoot()
      try command.run()
    } catch {
      let status = exitCode(for: error)
      if status == .success {
        if world.isLeader { print(fullMessage(for: error)) }
      } else {
        var message = message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
        if !(error is UsageError) { message += " (see 'gradaccum help')" }
        // With several processes: rank 0 reports what every process finds (the same input),
        // any rank what only it found, and the whole world ends (no process waits forever).
        if world.size == 1 {
          FileHandle.standardError.write(Data("Error: \(message)\n".utf8))
        } else {
          // When every rank meets the error (the same input), rank 0 reports it and ends the
          // world at once; another rank waits a moment first, so that it reports only an
          // error of its own.
          if !world.isLeader { sleep(2) }
          FileHandle.standardError.write(Data("Error: \(world.isLeader ? "" : "rank \(world.rank): ")\(message)\n".utf8))
          world.abort(status: status.rawValue == 0 ? 1 : status.rawValue)
        }
      }
      Self.exit(withError: status == .success ? nil : ExitCode(status.rawValue))
    }
  }

  /// When OpenBLAS fell back to generic kernels on a CPU it does not know (see
  /// `BLASKernels`), starts the command again with `OPENBLAS_CORETYPE` set to the family the
  /// CPU's features call for. A `OPENBLAS_CORETYPE` the user set is kept as it is.
  static func useSuitableKernels() {
    guard getenv("OPENBLAS_CORETYPE") == nil,
      let core = BLASKernels.recommendedCoreType(coreName: BLASKernels.coreName, flags: BLASKernels.cpuFlags())
    else { return }
    setenv("OPENBLAS_CORETYPE", core, 1)
    execv("/proc/self/exe", CommandLine.unsafeArgv)
    // The new image could not start: go on with OpenBLAS's own choice.
    unsetenv("OPENBLAS_CORETYPE")
  }
}
