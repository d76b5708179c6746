import Foundation
import RadialTestSupport
import Testing
@testable import RadialModel

@Suite struct GGUFReaderTests {
    /// A small valid file with every metadata type and two tensors.
    func sampleBytes() -> [UInt8] {
        var w = GGUFWriter()
        w.set("u8", .uint8(200)); w.set("i8", .int8(-5)); w.set("u16", .uint16(60000)); w.set("i16", .int16(-300))
        w.set("u32", .uint32(4_000_000_000)); w.set("i32", .int32(-70000)); w.set("u64", .uint64(1 << 40))
        w.set("i64", .int64(-(1 << 40))); w.set("f32", .float32(1.5)); w.set("f64", .float64(-2.25))
        w.set("b", .bool(true)); w.set("s", .string("héllo"))
        w.set("strings", .array(.string, [.string("a"), .string(""), .string("ĠParis")]))
        w.set("ints", .array(.int32, [.int32(1), .int32(-2)]))
        w.set("empty", .array(.float32, []))
        w.addTensor("vec", dimensions: [4], values: [1, 2, 3, 4])
        w.addTensor("mat", dimensions: [32, 2], values: (0..<64).map { Float($0) / 8 }, as: .f16)
        return w.serialized()
    }

    func open(_ bytes: [UInt8]) throws -> GGUFFile {
        let path = try TestSupport.tempDir() + "/f.gguf"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return try GGUFFile(path: path)
    }

    @Test func readsEveryMetadataTypeAndTensor() throws {
        let f = try open(sampleBytes())
        #expect(f.version == 3)
        #expect(f.metadata["u8"] == .uint8(200))
        #expect(f.metadata["i16"] == .int16(-300))
        #expect(f.metadata["u32"] == .uint32(4_000_000_000))
        #expect(f.metadata["i64"] == .int64(-(1 << 40)))
        #expect(f.metadata["f64"] == .float64(-2.25))
        #expect(f.metadata["b"] == .bool(true))
        #expect(try f.string("s") == "héllo")
        #expect(try f.strings("strings") == ["a", "", "ĠParis"])
        #expect(try f.ints("ints") == [1, -2])
        #expect(f.metadata["empty"] == .array(.float32, []))
        #expect(try f.floats("vec") == [1, 2, 3, 4])
        let mat = try f.requireTensor("mat")
        #expect(mat.rows == 2 && mat.columns == 32 && mat.type == .f16)
        #expect(try f.floats("mat") == (0..<64).map { Float($0) / 8 })
        #expect(f.metadataKeys.first == "u8")
    }

    @Test func readsVersion2() throws {
        var b = sampleBytes()
        b[4] = 2
        #expect(try open(b).version == 2)
    }

    @Test func badMagicIsNamed() throws {
        var b = sampleBytes()
        b[0] = UInt8(ascii: "X")
        #expect(throws: GGUFError.badMagic(found: "\"XGUF\"")) { try open(b) }
    }

    @Test func unsupportedVersion() throws {
        var b = sampleBytes()
        b[4] = 9
        #expect(throws: GGUFError.unsupportedVersion(9)) { try open(b) }
    }

    /// Every truncation of the header is an error, never a crash.
    @Test func everyTruncationFailsCleanly() throws {
        let b = sampleBytes()
        let f = try open(b)
        for n in stride(from: 0, to: f.dataOffset + 40, by: 1) {
            #expect(throws: GGUFError.self, "prefix of \(n) bytes") { try open(Array(b.prefix(n))) }
        }
    }

    @Test func absurdCountsAreRejected() throws {
        var b = sampleBytes()
        // tensor count at bytes 8..<16
        for i in 8..<16 { b[i] = 0xFF }
        #expect(throws: GGUFError.absurdCount(what: "tensors", count: UInt64.max, limit: GGUFFile.maxTensors)) { try open(b) }
        var c = sampleBytes()
        for i in 16..<24 { c[i] = 0x7F }
        #expect(throws: GGUFError.self) { try open(c) }
    }

    @Test func absurdStringLength() throws {
        var b = sampleBytes()
        // first key's length (u64 at byte 24)
        for i in 24..<32 { b[i] = 0xEE }
        #expect(throws: GGUFError.self) { try open(b) }
    }

    @Test func tensorPastEndOfFile() throws {
        let b = sampleBytes()
        let f = try open(b)
        // Cut the data section short: the header still parses, the last tensor runs off the end.
        let cut = Array(b.prefix(f.dataOffset + 20))
        #expect(throws: GGUFError.tensorOutOfBounds(tensor: "mat", end: f.dataOffset + 32 + 128, fileSize: cut.count)) { try open(cut) }
    }

    @Test func unsupportedTensorTypeIsNamed() throws {
        var w = GGUFWriter()
        w.addRawTensor("weird", dimensions: [32], type: .q8_0, bytes: Array(repeating: 0, count: 34))
        var b = w.serialized()
        // Patch the type (u32 after name and dims) from Q8_0 (8) to Q3_K (11).
        let typeOffset = 4 + 4 + 8 + 8 + (8 + 5) + 4 + 8
        #expect(b[typeOffset] == 8)
        b[typeOffset] = 11
        #expect(throws: GGUFError.unsupportedTensorType(tensor: "weird", type: "Q3_K")) { try open(b) }
    }

    @Test func duplicateKeyAndBadAlignment() throws {
        var w = GGUFWriter()
        w.set("k", .uint32(1)); w.set("k", .uint32(2))
        #expect(throws: GGUFError.duplicateKey("k")) { try open(w.serialized()) }
        var a = GGUFWriter()
        a.set("general.alignment", .uint32(24))
        #expect(throws: GGUFError.badAlignment(24)) { try open(a.serialized()) }
    }

    @Test func randomCorruptionNeverCrashes() throws {
        let base = sampleBytes()
        var rng = SplitMix64(seed: 7)
        for _ in 0..<300 {
            var b = base
            for _ in 0..<4 {
                let i = Int(rng.next() % UInt64(min(b.count, 400)))
                b[i] = UInt8(truncatingIfNeeded: rng.next())
            }
            _ = try? open(b)  // must return or throw, not trap
        }
    }

    @Test func missingFileIsCannotOpen() {
        #expect(throws: GGUFError.self) { try GGUFFile(path: "/nonexistent/model.gguf") }
    }
}
