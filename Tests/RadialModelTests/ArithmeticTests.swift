import Foundation
import RadialTestSupport
import Testing
@testable import RadialModel

/// The arithmetic is a value each model carries, not a process setting: two models in one process can compute
/// differently, each exactly as a process of its own would.
@Suite struct ArithmeticTests {
    @Test func modelsWithDifferentArithmeticCoexist() throws {
        let path = try TestSupport.writeTinyModel { $0.weightType = .q8_0 }
        let f32 = try LlamaModel(path: path)
        let q8 = try LlamaModel(path: path, activations: .q8)
        #expect(f32.shard.activations == .f32 && f32.head.activations == .f32)
        #expect(q8.shard.activations == .q8 && q8.head.activations == .q8)
        let ids = [3, 70, 104, 101, 260, 32, 119, 111]
        func logits(_ m: LlamaModel) throws -> [Float] { try m.prefill(cache: m.makeCache(), tokens: ids, allLogits: true).flatMap { $0 } }
        let a = try logits(f32), b = try logits(q8), a2 = try logits(f32), b2 = try logits(q8)
        #expect(a == a2 && b == b2, "each model is deterministic")
        #expect(a != b, "int8 activations change the bits")
        #expect(TestSupport.maxAbsDiff(a, b) < 0.05 * (a.map(abs).max() ?? 1), "and stay close to fp32")
    }
}
