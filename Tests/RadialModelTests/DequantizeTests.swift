import Foundation
import RadialTestSupport
import Testing
@testable import RadialModel

/// Our dequantisers against gguf-py's (llama.cpp's Python package), an implementation no one here wrote.
@Suite struct DequantizeTests {
    @Test func matchesGGUFPy() throws {
        let dir = try TestSupport.tempDir()
        try TestSupport.python([TestSupport.packageRoot + "/Tests/reference/dequant_ref.py", dir])
        let f = try GGUFFile(path: dir + "/quant.gguf")
        for type in GGMLType.allCases {
            let expectedData = try Data(contentsOf: URL(fileURLWithPath: dir + "/expected_\(type).f32"))
            let expected = expectedData.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            let got = try f.floats("t_\(type)")
            #expect(got.count == expected.count, "\(type)")
            let diff = TestSupport.maxAbsDiff(got, expected)
            #expect(diff <= 1e-6, "\(type) differs by \(diff)")
            #expect(expected.contains { $0 != 0 }, "\(type) reference is all zeros")
        }
    }

    /// Our encoders round-trip within each format's step size.
    @Test func encodersRoundTrip() throws {
        var rng = SplitMix64(seed: 3)
        let values = (0..<256).map { _ in Float(rng.nextDouble() * 2 - 1) }
        for (type, tol): (GGMLType, Float) in [(.f32, 0), (.f16, 1e-3), (.bf16, 1e-2), (.q8_0, 1e-2), (.q4_0, 0.15), (.q4_1, 0.08)] {
            let bytes = Quantize.encode(values, as: type)
            var out = [Float](repeating: .nan, count: values.count)
            bytes.withUnsafeBytes { src in
                out.withUnsafeMutableBufferPointer { Dequantize.run(type: type, from: src, into: $0) }
            }
            #expect(TestSupport.maxAbsDiff(out, values) <= tol, "\(type)")
        }
    }
}
