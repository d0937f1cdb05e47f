import CKernels

/// A kernel variant of the C core.
public enum KernelVariant: String, CaseIterable, Sendable {
    case scalar, avx2, avx512, neon

    var cValue: m2k_variant {
        switch self {
        case .scalar: return M2K_VARIANT_SCALAR
        case .avx2: return M2K_VARIANT_AVX2
        case .avx512: return M2K_VARIANT_AVX512
        case .neon: return M2K_VARIANT_NEON
        }
    }

    /// True when this CPU and build can run the variant.
    public var isSupported: Bool { m2k_variant_kernels(cValue) != nil }
}

public struct ComputeError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The kernel table and the thread pool that every op of one model runs on.
///
/// Weights packed for one context (see `Linear`) must be used with a context of the same
/// kernel variant, since the packing follows the variant's micro-tile.
public final class ComputeContext: @unchecked Sendable {
    public let kernels: UnsafePointer<m2k_kernels>
    public let threads: Int
    /// The m2k_pool the ops run on (for C kernels called directly).
    public let pool: OpaquePointer?

    /// - Parameters:
    ///   - threads: worker threads including the caller; nil uses every online CPU.
    ///   - variant: a kernel variant; nil uses `m2k_active()` (the best, or M2CLIP_KERNELS).
    public init(threads: Int? = nil, variant: KernelVariant? = nil) throws {
        if let variant {
            guard let table = m2k_variant_kernels(variant.cValue) else {
                throw ComputeError("kernel variant \(variant.rawValue) is not supported on this CPU")
            }
            kernels = table
        } else {
            kernels = m2k_active()
        }
        let wanted = threads ?? ComputeContext.onlineCPUs
        guard wanted >= 1 else { throw ComputeError("threads must be at least 1, got \(wanted)") }
        guard let pool = m2k_pool_create(Int32(wanted)) else {
            throw ComputeError("cannot start a pool of \(wanted) threads")
        }
        self.pool = pool
        self.threads = wanted
    }

    deinit { m2k_pool_destroy(pool) }

    /// "avx512", "avx2", "scalar" or "neon".
    public var kernelName: String { String(cString: kernels.pointee.name) }

    /// Why an M2CLIP_KERNELS request was not honoured, if it was not.
    public static var dispatchWarning: String? {
        m2k_dispatch_error().map { String(cString: $0) }
    }

    public static var onlineCPUs: Int {
        max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
