import DataLoading
import Foundation
import Tensors
import Testing

@Suite("CSV reader")
struct CSVReaderTests {
  @Test func readsFeaturesAndLabels() throws {
    let dataset = try CSVReader.parse("a,b,label\n1,2,0\n3.5,-4,2\n\n", path: "t.csv", labelKind: .classIndex)
    #expect(dataset.count == 2)
    #expect(dataset.sampleShape == [2])
    #expect(dataset.inputs.values == [1, 2, 3.5, -4])
    #expect(dataset.targets.values == [0, 2])
  }

  @Test func labelColumnByNameOrIndex() throws {
    let text = "y,x1,x2\n0.5,1,2\n1.5,3,4\n"
    let byName = try CSVReader.parse(text, path: "t.csv", labelColumn: "y", labelKind: .value)
    #expect(byName.inputs.values == [1, 2, 3, 4] && byName.targets.values == [0.5, 1.5])
    let byIndex = try CSVReader.parse(text, path: "t.csv", labelColumn: "0", labelKind: .value)
    #expect(byIndex.targets.values == [0.5, 1.5])
    let fromEnd = try CSVReader.parse(text, path: "t.csv", labelColumn: "-1", labelKind: .value)
    #expect(fromEnd.targets.values == [2, 4])
  }

  @Test func inputShapeLaysOutImages() throws {
    let dataset = try CSVReader.parse(
      "p0,p1,p2,p3,l\n1,2,3,4,1\n", path: "t.csv", labelKind: .classIndex, inputShape: [1, 2, 2])
    #expect(dataset.inputs.shape == [1, 1, 2, 2])
  }

  @Test(arguments: [
    ("", DataError.empty(path: "t.csv")),
    ("a,b\n", DataError.noRows(path: "t.csv")),
    ("a,b,c\n1,2,3\n4,5\n", DataError.raggedRow(path: "t.csv", line: 3, expectedColumns: 3, actualColumns: 2)),
    ("a,b\n1,x\n", DataError.notNumeric(path: "t.csv", line: 2, column: "b", text: "x")),
    ("a,b\nnan,1\n", DataError.notNumeric(path: "t.csv", line: 2, column: "a", text: "nan")),
    (
      "a,b\n1,nan\n",
      DataError.invalidLabel(path: "t.csv", line: 2, value: "nan", expected: "a class index (an integer ≥ 0)")
    ),
    (
      "a,b\n1,1.5\n",
      DataError.invalidLabel(path: "t.csv", line: 2, value: "1.5", expected: "a class index (an integer ≥ 0)")
    ),
    (
      "a,b\n1,-1\n",
      DataError.invalidLabel(path: "t.csv", line: 2, value: "-1", expected: "a class index (an integer ≥ 0)")
    ),
    ("label\n1\n", DataError.noFeatures(path: "t.csv")),
  ])
  func rejectsMalformedFiles(text: String, expected: DataError) {
    #expect(throws: expected) { try CSVReader.parse(text, path: "t.csv", labelKind: .classIndex) }
  }

  @Test func rejectsUnknownLabelColumnAndWrongShape() {
    #expect(throws: DataError.labelColumnNotFound(path: "t.csv", column: "z", available: ["a", "b"])) {
      try CSVReader.parse("a,b\n1,2\n", path: "t.csv", labelColumn: "z", labelKind: .value)
    }
    #expect(throws: DataError.inputShapeMismatch(path: "t.csv", features: 3, inputShape: [2, 2])) {
      try CSVReader.parse("a,b,c,d\n1,2,3,4\n", path: "t.csv", labelKind: .value, inputShape: [2, 2])
    }
    #expect(throws: DataError.invalidLabel(path: "t.csv", line: 2, value: "inf", expected: "a finite number")) {
      try CSVReader.parse("a,b\n1,inf\n", path: "t.csv", labelKind: .value)
    }
  }

  @Test func missingFileIsAClearError() {
    #expect(throws: DataError.fileNotReadable(path: "/nonexistent/x.csv", reason: "no such file")) {
      try CSVReader.load(path: "/nonexistent/x.csv", labelKind: .value)
    }
  }

  @Test func errorMessagesNameLineAndColumn() {
    #expect(
      DataError.notNumeric(path: "d.csv", line: 7, column: "x2", text: "abc").description
        == "d.csv line 7, column x2: \"abc\" is not a finite number")
  }
}

@Suite("Data loader")
struct DataLoaderTests {
  let dataset = TensorDataset(
    inputs: Tensor((0..<20).map(Float.init), shape: [10, 2]), targets: Tensor((0..<10).map(Float.init), shape: [10]))

  @Test func batchesInOrderWithAPartialLastBatch() {
    let loader = DataLoader(batchSize: 4)
    #expect(loader.batchIndices(count: 10, epoch: 0) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]])
    let batches = loader.batches(of: dataset, epoch: 0)
    #expect(batches.map(\.count) == [4, 4, 2])
    #expect(batches[2].inputs.values == [16, 17, 18, 19])
    #expect(batches[2].targets.values == [8, 9])
  }

  @Test func dropLastDropsThePartialBatch() {
    #expect(DataLoader(batchSize: 4, dropLast: true).batchIndices(count: 10, epoch: 0).map(\.count) == [4, 4])
  }

  @Test func shuffleIsSeededPerEpochAndAPermutation() {
    let loader = DataLoader(batchSize: 3, shuffle: true, seed: 42)
    let first = loader.sampleOrder(count: 100, epoch: 0)
    #expect(first.sorted() == Array(0..<100))
    #expect(first != Array(0..<100))
    #expect(first == DataLoader(batchSize: 7, shuffle: true, seed: 42).sampleOrder(count: 100, epoch: 0))
    #expect(first != loader.sampleOrder(count: 100, epoch: 1))
    #expect(first != DataLoader(batchSize: 3, shuffle: true, seed: 43).sampleOrder(count: 100, epoch: 0))
  }

  @Test func gatheredRowsFollowTheIndices() {
    let batch = dataset.batch(at: [3, 1, 2])
    #expect(batch.inputs.values == [6, 7, 2, 3, 4, 5])
    #expect(batch.targets.values == [3, 1, 2])
  }
}

@Suite("Validation split")
struct ValidationSplitTests {
  let dataset = TensorDataset(
    inputs: Tensor((0..<20).map(Float.init), shape: [10, 2]), targets: Tensor((0..<10).map(Float.init), shape: [10]))

  @Test func holdsOutASeededFractionInOrder() throws {
    let (training, validation) = try dataset.splitting(validationFraction: 0.3, seed: 4)
    #expect(training.count == 7 && validation.count == 3)
    let held = validation.targets.values, kept = training.targets.values
    #expect(Set(held + kept) == Set((0..<10).map(Float.init)))
    #expect(held == held.sorted() && kept == kept.sorted())
    // Rows travel with their targets.
    #expect(validation.inputs.values == held.flatMap { [2 * $0, 2 * $0 + 1] })
    let again = try dataset.splitting(validationFraction: 0.3, seed: 4)
    #expect(again.validation.targets.values == held)
    let other = try dataset.splitting(validationFraction: 0.3, seed: 5)
    #expect(other.validation.targets.values != held)
  }

  @Test(arguments: [0.0, 1.0, -0.2, 0.01, 0.99, Double.nan])
  func refusesFractionsThatLeaveASideEmpty(fraction: Double) {
    #expect(throws: DataError.self) { try dataset.splitting(validationFraction: fraction, seed: 0) }
  }
}
