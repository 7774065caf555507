import Foundation
import Testing
import _TestSupport

@Suite("gradaccum plan")
struct PlanCommandTests {
  static let model = "linear(784,512) relu linear(512,512) relu linear(512,10)"

  @Test(.measuresMemory) func jsonPlanWithMeasurements() throws {
    let result = try CommandRunner.run([
      "plan", "--model", Self.model, "--input-shape", "784", "--target-batch", "256", "--budget", "14MB", "--optimizer",
      "adam", "--dataset-size", "1000", "--measure", "--json",
    ])
    #expect(result.status == 0, "\(result.error)")
    let object = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as! [String: Any]
    for key in [
      "micro_batch", "accumulation_steps", "window_sizes", "budget_bytes", "persistent_bytes", "predicted_peak_bytes",
      "measurements",
    ] {
      #expect(object[key] != nil, "missing \(key)")
    }
    let microBatch = object["micro_batch"] as! Int
    let budget = object["budget_bytes"] as! Int
    #expect(budget == 14 << 20)
    #expect((object["window_sizes"] as! [Int]).reduce(0, +) == 256)
    #expect((object["last_window_sizes"] as! [Int]).reduce(0, +) == 1000 % 256)
    let measurements = object["measurements"] as! [[String: Int]]
    #expect(measurements.contains { $0["micro_batch"] == microBatch })
    #expect(measurements.contains { $0["micro_batch"] == microBatch + 1 })
    for measurement in measurements {
      let predicted = Double(measurement["predicted_peak_bytes"]!),
        measured = Double(measurement["measured_peak_bytes"]!)
      #expect(abs(predicted - measured) / measured <= 0.02)
      if measurement["micro_batch"] == microBatch { #expect(measured <= Double(budget)) }
      // The plan keeps the trainer's margin free: micro-batch + 1 goes past budget − margin.
      if measurement["micro_batch"] == microBatch + 1 {
        #expect(measured > Double(budget - (object["margin_bytes"] as! Int)))
      }
    }
  }

  @Test(.measuresMemory) func tablePlan() throws {
    let result = try CommandRunner.run([
      "plan", "--model", "linear(64,128) relu linear(128,10)", "--input-shape", "64", "--target-batch", "40",
      "--budget", "200KB",
    ])
    #expect(result.status == 0, "\(result.error)")
    for text in [
      "largest micro-batch", "each window", "safety margin", "parameters", "gradients", "transient", "headroom",
      "linear(64,128)",
    ] {
      #expect(result.output.contains(text), "missing \(text)")
    }
  }

  @Test func anotherAllocatorIsAClearError() throws {
    // Preloading the C library puts its malloc in front of jemalloc's: predictions still
    // work (they need jemalloc's size classes only), measurements are refused.
    let environment = ["LD_PRELOAD": "/lib/x86_64-linux-gnu/libc.so.6"]
    #expect(try CommandRunner.run(Self.plan([]), environment: environment).status == 0)
    let result = try CommandRunner.run(Self.plan(["--measure"]), environment: environment)
    #expect(result.status != 0 && !result.crashed)
    #expect(result.error.contains("allocations do not reach jemalloc"), "\(result.error)")
    #expect(result.error.contains("do not preload another allocator"))
  }

  static func plan(_ extra: [String], model: String = "linear(4,2)", shape: String = "4") -> [String] {
    ["plan", "--model", model, "--input-shape", shape, "--target-batch", "8", "--budget", "1MB"] + extra
  }

  @Test(arguments: [
    (plan(["--budget", "abc"]), "budget \"abc\" is not a size"),
    (plan(["--budget", "12XB"]), "unknown unit \"xb\""),
    (plan(["--budget", "0"]), "must be more than 0 bytes"),
    (plan(["--budget=-5MB"]), "must be more than 0 bytes"),
    (plan(["--budget", "99999999999TB"]), "more than any machine has"),
    (plan(["--target-batch", "0"]), "--target-batch is 0, expected an integer ≥ 1"),
    (plan(["--target-batch=-4"]), "--target-batch is -4"),
    (plan(["--dataset-size", "0"]), "--dataset-size is 0"),
    (plan([], model: "linear(4,2"), "unbalanced parentheses"),
    (plan([], model: "conv9d(1,2)"), "unknown layer \"conv9d\""),
    (plan([], model: "linear(4)"), "expected 2 positional arguments"),
    (plan([], shape: "5"), "linear(4,2) expects 4 input features per sample, got input shape [5]"),
    (plan([], shape: "4xq"), "--input-shape \"4xq\" is not a shape"),
    (
      plan(["--budget", "1KB"], model: "linear(784,512) relu linear(512,10)", shape: "784"),
      "is too small: even a micro-batch of 1 needs"
    ),
    (["plan", "--model", "linear(4,2)", "--target-batch", "8", "--budget", "1MB"], "--input-shape is required"),
  ])
  func badInputGivesOneClearLine(arguments: [String], message: String) throws {
    let result = try CommandRunner.run(arguments)
    #expect(!result.crashed)
    #expect(result.status != 0)
    #expect(result.error.split(separator: "\n").count == 1, "\(result.error)")
    #expect(result.error.contains(message), "\(result.error)")
  }
}

@Suite("gradaccum plan --objective throughput")
struct ThroughputObjectiveTests {
  @Test(.measuresMemory) func picksTheFastestMeasuredCandidate() throws {
    let result = try CommandRunner.run([
      "plan", "--model", "linear(64,128) relu linear(128,10)", "--input-shape", "64", "--target-batch", "64",
      "--budget", "1MB", "--objective", "throughput", "--json",
    ])
    #expect(result.status == 0, "\(result.error)")
    let object = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as! [String: Any]
    #expect(object["objective"] as? String == "throughput")
    let candidates = object["candidates"] as! [[String: Any]]
    let sizes = candidates.map { $0["micro_batch"] as! Int }
    #expect(sizes.first == 1 && sizes == sizes.sorted())
    let fastest = candidates.min { ($0["step_seconds"] as! Double) < ($1["step_seconds"] as! Double) }!
    #expect(object["micro_batch"] as? Int == fastest["micro_batch"] as? Int)
    #expect((object["window_sizes"] as! [Int]).reduce(0, +) == 64)
    #expect((object["predicted_peak_bytes"] as! Int) <= (object["budget_bytes"] as! Int))
    // The text says whether the micro-batch is the largest that fits or a faster smaller one.
    let largest = sizes.max()!
    let text = try CommandRunner.run([
      "plan", "--model", "linear(64,128) relu linear(128,10)", "--input-shape", "64", "--target-batch", "64",
      "--budget", "1MB", "--objective", "throughput",
    ])
    let line = try #require(text.output.split(separator: "\n").first { $0.contains("micro-batch  ") && $0.contains("(") })
    if line.hasPrefix("largest micro-batch") {
      #expect(line.contains(" \(largest) (the largest that fits the budget)"), "\(line)")
    } else {
      #expect(line.hasPrefix("micro-batch ") && line.contains("(the fastest measured; up to \(largest) fit the budget)"), "\(line)")
    }
  }
}
