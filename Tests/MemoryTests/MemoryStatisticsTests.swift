import Memory
import Testing
import _TestSupport

#if canImport(Glibc)
  import Glibc
#endif

@Suite("jemalloc statistics")
struct MemoryStatisticsTests {
  @Test(.measuresMemory) func jemallocServesMalloc() throws {
    try MemoryStatistics.verifyJemallocIsTheAllocator()
  }

  @Test(.measuresMemory) func allocationsMoveTheProcessCounters() throws {
    let before = try MemoryStatistics.allocatedBytes()
    let block = malloc(8 << 20)!
    block.storeBytes(of: 1, as: UInt8.self)
    let during = try MemoryStatistics.allocatedBytes()
    free(block)
    // Process-wide: tests on other threads may free memory meanwhile, so allow slack.
    #expect(during - before >= 7 << 20)
    #expect(try MemoryStatistics.residentBytes() > 0)
    #expect(try MemoryStatistics.mappedBytes() >= MemoryStatistics.activeBytes())
  }

  @Test(.measuresMemory) func threadCounterOnlySeesThisThread() throws {
    let before = try MemoryStatistics.threadAllocatedBytes()
    let block = malloc(5 << 20)!
    block.storeBytes(of: 1, as: UInt8.self)
    free(block)
    #expect(try MemoryStatistics.threadAllocatedBytes() - before >= 5 << 20)
  }

  @Test(.measuresMemory) func threadPeakSeesATransientBlock() throws {
    let (_, peak) = try MemoryStatistics.measurePeak {
      let block = malloc(3 << 20)!
      block.storeBytes(of: 1, as: UInt8.self)
      free(block)
    }
    // The peak is net of anything freed after the reset, so allow a little slack below.
    #expect(peak >= (3 << 20) - 4096)
    #expect(peak < 4 << 20)
  }

  @Test(.measuresMemory, arguments: [1, 8, 9, 100, 4097, 20_000, 1 << 20])
  func sizeClassesRoundUp(requestBytes: Int) {
    let rounded = MemoryStatistics.sizeClassBytes(forRequest: requestBytes)
    #expect(rounded >= requestBytes)
    #expect(rounded < requestBytes * 2 || requestBytes < 16)
    let block = malloc(requestBytes)!
    #expect(MemoryStatistics.usableBytes(of: block) == rounded)
    free(block)
  }
}
