import ArgumentParser
import Foundation

@main
struct GradAccumCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "gradaccum",
    abstract: "Train neural networks under a memory budget with exact gradient accumulation.",
    subcommands: [PlanCommand.self, TrainCommand.self, EvaluateCommand.self, GenerateCommand.self, BenchCommand.self, DemoCommand.self])

  /// Runs the command line. Help goes to standard output; any error is one line on
  /// standard error with a non-zero exit status.
  static func main() {
    do {
      var command = try parseAsRoot()
      try command.run()
    } catch {
      let status = exitCode(for: error)
      if status == .success {
        print(fullMessage(for: error))
      } else {
        var message = message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
        if !(error is UsageError) { message += " (see 'gradaccum help')" }
        FileHandle.standardError.write(Data("Error: \(message)\n".utf8))
      }
      Self.exit(withError: status == .success ? nil : ExitCode(status.rawValue))
    }
  }
}
