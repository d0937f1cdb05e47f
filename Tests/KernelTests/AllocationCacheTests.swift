import CKernels
import Testing

/// m2k_alloc's reuse of large freed blocks while a user (the trainer) is active. Sizes are
/// odd so that other suites running at the same time are unlikely to ask for a block these
/// tests freed.
@Suite struct AllocationCacheTests {
    /// A freed 5 MB block comes back for a request it fits with at most 25 % slack, still
    /// 64-byte aligned; a much smaller request does not take it.
    @Test func freedBlocksAreReusedWithinTheSlack() throws {
        m2k_alloc_cache_begin(1 << 30)
        let block = try #require(m2k_alloc(5_000_011))
        m2k_free(block)
        #expect(m2k_alloc_cached_bytes() >= 5_000_011)
        let small = try #require(m2k_alloc(1_500_007))   // 5 MB would be > 25 % slack
        #expect(small != block)
        let again = try #require(m2k_alloc(4_900_003))
        #expect(again == block && Int(bitPattern: again) % 64 == 0)
        m2k_free(small)
        m2k_free(again)
        m2k_alloc_cache_end()
    }
}
