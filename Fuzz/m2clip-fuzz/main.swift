// libFuzzer's entry point for every FuzzTarget; the target is M2CLIP_FUZZ_TARGET. Built only
// by scripts/fuzz.sh (M2CLIP_FUZZ=1, -sanitize=fuzzer,address, -parse-as-library). SwiftPM links
// an executable's main as `<module>_main`, so that is where libFuzzer's driver is started.
import FuzzTargets

let target = FuzzTarget.fromEnvironment()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    target.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func runDriver(_ argc: UnsafeMutablePointer<CInt>,
               _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
               _ body: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

@_cdecl("m2clip_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    target.prepare()
    var count = argc, arguments = argv
    return runDriver(&count, &arguments) { data, size in fuzzOneInput(data, size) }
}
