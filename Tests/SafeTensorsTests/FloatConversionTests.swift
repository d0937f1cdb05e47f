import Testing
@testable import SafeTensors
import Ops

/// The oracle for binary16 is the standard library's `Float16` (IEEE 754 conversions, ties to
/// even); for bfloat16 it is `nearestBFloat16`, a search over the two neighbours in Double.
@Suite struct FloatConversionTests {
    @Test func halfSpecialValues() {
        let cases: [(UInt16, Float)] = [
            (0x0000, 0), (0x8000, -0.0), (0x3C00, 1), (0xC000, -2), (0x7BFF, 65504),
            (0x0001, 0x1p-24), (0x03FF, 0x1.FF8p-15), (0x0400, 0x1p-14), (0x8001, -0x1p-24),
            (0x7C00, .infinity), (0xFC00, -.infinity), (0x3555, 0.333251953125),
        ]
        for (bits, value) in cases {
            #expect(sameFloat(FloatConversion.float(fromFloat16Bits: bits), value), "0x\(String(bits, radix: 16))")
            #expect(FloatConversion.float16Bits(from: value) == bits, "\(value)")
        }
        #expect(FloatConversion.float(fromFloat16Bits: 0x7E00).isNaN)
        #expect(FloatConversion.float(fromFloat16Bits: 0xFC01).isNaN)  // signalling NaN stays NaN
        #expect(FloatConversion.float16Bits(from: .nan) & 0x7FFF > 0x7C00)
        // A NaN whose payload sits only in the low float bits must not turn into inf.
        #expect(FloatConversion.float16Bits(from: Float(bitPattern: 0x7F80_0001)) & 0x7FFF > 0x7C00)
    }

    @Test func halfRoundingEdges() {
        let cases: [(Float, UInt16)] = [
            (65519.996, 0x7BFF),           // just below the inf threshold
            (65520, 0x7C00),               // halfway to 2^16: ties to even, which is inf
            (1e10, 0x7C00), (-1e10, 0xFC00),
            (0x1p-25, 0x0000),             // halfway between 0 and the smallest subnormal: even 0
            (0x1.000002p-25, 0x0001),      // just above halfway
            (0x1.8p-24, 0x0002),           // 1.5 ulp: ties to even 2
            (0x1.4p-23, 0x0002),           // 2.5 ulp: ties to even 2
            (0x1.FFCp-15, 0x0400),         // rounds up out of the subnormals into the first normal
            (1 + 0x1p-11, 0x3C00),         // halfway between 1 and next: ties to even 1
            (1 + 0x1.8p-10, 0x3C02),       // 1.5 ulp above 1: ties to even
            (0x1p-30, 0x0000), (-0x1p-30, 0x8000),
        ]
        for (value, bits) in cases {
            #expect(FloatConversion.float16Bits(from: value) == bits,
                    "\(value): got 0x\(String(FloatConversion.float16Bits(from: value), radix: 16))")
        }
    }

    #if !(os(macOS) && arch(x86_64))  // Float16 is unavailable on Intel Macs
    @Test func everyHalfMatchesFloat16() {
        for bits in UInt16.min...UInt16.max {
            let ours = FloatConversion.float(fromFloat16Bits: bits)
            let oracle = Float(Float16(bitPattern: bits))
            #expect(sameFloat(ours, oracle), "0x\(String(bits, radix: 16))")
            if !ours.isNaN {
                #expect(FloatConversion.float16Bits(from: ours) == bits, "0x\(String(bits, radix: 16))")
            }
        }
    }

    @Test func floatToHalfMatchesFloat16() {
        var failures = 0
        func check(_ value: Float) {
            let ours = FloatConversion.float16Bits(from: value)
            let oracle = Float16(value)
            let matches = oracle.isNaN ? (ours & 0x7FFF) > 0x7C00 : ours == oracle.bitPattern
            if !matches {
                failures += 1
                Issue.record("\(value) (0x\(String(value.bitPattern, radix: 16))): got 0x\(String(ours, radix: 16)), expected 0x\(String(oracle.bitPattern, radix: 16))")
            }
        }
        // Every midpoint between neighbouring halves (the ties), and the floats either side.
        for bits in UInt16(0)..<0x7C00 {
            let low = Float(Float16(bitPattern: bits))
            let high = Float(Float16(bitPattern: bits + 1))
            let middle = (low + high) / 2  // exact: both fit in 11 bits of a 24-bit significand
            for value in [middle, middle.nextDown, middle.nextUp] {
                check(value)
                check(-value)
            }
        }
        // Random bit patterns across the whole float range.
        var generator = SplitMix64(seed: 0x5AFE_7E25)
        for _ in 0..<200_000 {
            check(Float(bitPattern: UInt32(truncatingIfNeeded: generator.next())))
        }
        // Random floats near the binary16 range.
        for _ in 0..<200_000 {
            check(Float.random(in: -70000...70000, using: &generator))
            check(Float.random(in: -0x1p-13...0x1p-13, using: &generator))
        }
        #expect(failures == 0)
    }
    #endif

    @Test func bfloat16Edges() {
        let cases: [(Float, UInt16)] = [
            (1, 0x3F80), (-2, 0xC000), (0, 0x0000), (-0.0, 0x8000),
            (Float(bitPattern: 0x3F80_8000), 0x3F80),  // tie: even stays
            (Float(bitPattern: 0x3F81_8000), 0x3F82),  // tie: odd rounds up
            (Float(bitPattern: 0x3F80_8001), 0x3F81),  // just above the tie
            (Float(bitPattern: 0x3F80_7FFF), 0x3F80),  // just below the tie
            (.greatestFiniteMagnitude, 0x7F80),        // rounds to inf
            (.infinity, 0x7F80), (-.infinity, 0xFF80),
            (Float(bitPattern: 0x0000_8000), 0x0000),  // subnormal tie: even 0
            (Float(bitPattern: 0x0001_8000), 0x0002),  // subnormal tie: odd rounds up
        ]
        for (value, bits) in cases {
            #expect(FloatConversion.bfloat16Bits(from: value) == bits, "\(value)")
        }
        #expect(FloatConversion.float(fromBFloat16Bits: 0x3F80) == 1)
        #expect(FloatConversion.float(fromBFloat16Bits: 0xFF80) == -.infinity)
        #expect(FloatConversion.float(fromBFloat16Bits: 0x0001) == Float(bitPattern: 0x0001_0000))
        #expect(FloatConversion.float(fromBFloat16Bits: 0x7FC0).isNaN)
        #expect(FloatConversion.bfloat16Bits(from: .nan) & 0x7FFF > 0x7F80)
        // A NaN whose payload sits only in the low float bits must not turn into inf.
        #expect(FloatConversion.bfloat16Bits(from: Float(bitPattern: 0x7F80_0001)) & 0x7FFF > 0x7F80)
    }

    @Test func bfloat16MatchesNearestSearch() {
        var generator = SplitMix64(seed: 0xBF16)
        for _ in 0..<200_000 {
            let value = Float(bitPattern: UInt32(truncatingIfNeeded: generator.next()))
            guard value.isFinite else { continue }
            let ours = FloatConversion.bfloat16Bits(from: value)
            let oracle = nearestBFloat16(value)
            #expect(ours == oracle, "\(value): got 0x\(String(ours, radix: 16)), expected 0x\(String(oracle, radix: 16))")
            if ours != oracle { break }
        }
        for bits in UInt16.min...UInt16.max {
            let value = FloatConversion.float(fromBFloat16Bits: bits)
            #expect(value.bitPattern == UInt32(bits) << 16)
            if !value.isNaN { #expect(FloatConversion.bfloat16Bits(from: value) == bits) }
        }
    }

    /// Round to nearest, ties to even, by comparing the distances to the two bfloat16 values
    /// around `value` in Double; the one past the largest finite value stands in for infinity.
    private func nearestBFloat16(_ value: Float) -> UInt16 {
        let truncated = UInt16(value.bitPattern >> 16)
        let up = truncated &+ 1
        let low = Double(Float(bitPattern: UInt32(truncated) << 16))
        // Beyond the largest finite bfloat16, the next "value" is 2^128 (inf in binary).
        let high = (up & 0x7FFF) == 0x7F80
            ? (value < 0 ? -0x1p128 : 0x1p128)
            : Double(Float(bitPattern: UInt32(up) << 16))
        let exact = Double(value)
        let below = abs(exact - low)
        let above = abs(high - exact)
        if below < above { return truncated }
        if above < below { return up }
        return truncated & 1 == 0 ? truncated : up
    }
}
