import ArgumentParser

@main
struct GradAccumCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "gradaccum",
    abstract: "Train neural networks under a memory budget with exact gradient accumulation.",
    subcommands: [TrainCommand.self, DemoCommand.self])
}
