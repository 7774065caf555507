import CMPI
import Foundation

/// The processes that train one model together, and the collective operations a data-
/// parallel trainer needs: every process calls each operation, in the same order.
///
/// ``SingleProcess`` is a world of one (every operation returns its input); ``MPIWorld`` is
/// `MPI_COMM_WORLD` of a program started by `mpirun`.
public protocol Communicator: AnyObject {
  /// This process's rank, `0..<size`.
  var rank: Int { get }
  /// The number of processes.
  var size: Int { get }
  /// Replaces `values` on every process by their elementwise sum over all processes.
  func sumInPlace(_ values: UnsafeMutableBufferPointer<Float>)
  /// The elementwise sums over all processes.
  func sum(_ values: [Double]) -> [Double]
  /// The elementwise maxima over all processes.
  func maximum(_ values: [Int64]) -> [Int64]
  /// Copies rank `root`'s `values` to every process.
  func broadcast(_ values: UnsafeMutableBufferPointer<Float>, root: Int)
  /// Rank `root`'s `values`, on every process.
  func broadcast(_ values: [Int64], root: Int) -> [Int64]
  /// Ends every process of the world with `status` (after this one wrote its message).
  func abort(status: Int32) -> Never
}

extension Communicator {
  /// Whether this process writes logs, checkpoints and progress (rank 0).
  public var isLeader: Bool { rank == 0 }
}

/// A world of one process: the default, with no MPI call at all.
public final class SingleProcess: Communicator {
  public init() {}
  public var rank: Int { 0 }
  public var size: Int { 1 }
  public func sumInPlace(_ values: UnsafeMutableBufferPointer<Float>) {}
  public func sum(_ values: [Double]) -> [Double] { values }
  public func maximum(_ values: [Int64]) -> [Int64] { values }
  public func broadcast(_ values: UnsafeMutableBufferPointer<Float>, root: Int) {}
  public func broadcast(_ values: [Int64], root: Int) -> [Int64] { values }
  public func abort(status: Int32) -> Never { exit(status) }
}

/// `MPI_COMM_WORLD` through Open MPI: the processes `mpirun -np N` started.
///
/// ``joinIfLaunched()`` initializes MPI only when the process was started by `mpirun` (it
/// sets `OMPI_COMM_WORLD_SIZE`), so a program run alone makes no MPI call and pays nothing.
/// MPI is finalized when the process exits normally.
public final class MPIWorld: Communicator {
  public let rank: Int
  public let size: Int
  nonisolated(unsafe) static var joined: MPIWorld?

  init() {
    var provided: Int32 = 0
    MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided)
    var rank: Int32 = 0, size: Int32 = 1
    MPI_Comm_rank(gradaccum_mpi_comm_world(), &rank)
    MPI_Comm_size(gradaccum_mpi_comm_world(), &size)
    self.rank = Int(rank)
    self.size = Int(size)
    atexit { MPIWorld.finalize() }
  }

  /// Whether `mpirun` started this process (Open MPI's launcher variables are set).
  public static var isLaunched: Bool {
    ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil
  }

  /// The world this process belongs to: `MPI_COMM_WORLD` when started by `mpirun` (MPI is
  /// initialized on the first call), otherwise `nil`.
  public static func joinIfLaunched() -> MPIWorld? {
    if let joined { return joined }
    guard isLaunched else { return nil }
    let world = MPIWorld()
    joined = world
    return world
  }

  static func finalize() {
    var finalized: Int32 = 0
    MPI_Finalized(&finalized)
    if finalized == 0 { MPI_Finalize() }
  }

  public func sumInPlace(_ values: UnsafeMutableBufferPointer<Float>) {
    guard size > 1, let base = values.baseAddress, values.count > 0 else { return }
    // In chunks of at most 2^30 elements: MPI counts are 32-bit.
    var offset = 0
    while offset < values.count {
      let count = min(values.count - offset, 1 << 30)
      MPI_Allreduce(
        gradaccum_mpi_in_place(), base + offset, Int32(count), gradaccum_mpi_float(), gradaccum_mpi_sum(),
        gradaccum_mpi_comm_world())
      offset += count
    }
  }

  public func sum(_ values: [Double]) -> [Double] { allReduced(values, gradaccum_mpi_double(), gradaccum_mpi_sum()) }

  public func maximum(_ values: [Int64]) -> [Int64] { allReduced(values, gradaccum_mpi_int64(), gradaccum_mpi_max()) }

  /// `values` reduced over every process with `operation` (a short array: one call).
  func allReduced<Value>(_ values: [Value], _ type: MPI_Datatype, _ operation: MPI_Op) -> [Value] {
    guard size > 1, !values.isEmpty else { return values }
    var result = values
    result.withUnsafeMutableBufferPointer { buffer in
      _ = MPI_Allreduce(
        gradaccum_mpi_in_place(), buffer.baseAddress, Int32(buffer.count), type, operation, gradaccum_mpi_comm_world())
    }
    return result
  }

  public func broadcast(_ values: UnsafeMutableBufferPointer<Float>, root: Int) {
    guard size > 1, let base = values.baseAddress, values.count > 0 else { return }
    var offset = 0
    while offset < values.count {
      let count = min(values.count - offset, 1 << 30)
      MPI_Bcast(base + offset, Int32(count), gradaccum_mpi_float(), Int32(root), gradaccum_mpi_comm_world())
      offset += count
    }
  }

  public func broadcast(_ values: [Int64], root: Int) -> [Int64] {
    guard size > 1, !values.isEmpty else { return values }
    var result = values
    result.withUnsafeMutableBufferPointer { buffer in
      _ = MPI_Bcast(buffer.baseAddress, Int32(buffer.count), gradaccum_mpi_int64(), Int32(root), gradaccum_mpi_comm_world())
    }
    return result
  }

  public func abort(status: Int32) -> Never {
    fflush(nil)
    MPI_Abort(gradaccum_mpi_comm_world(), status)
    exit(status)
  }
}
