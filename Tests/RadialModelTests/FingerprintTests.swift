import Foundation
import RadialTestSupport
import Testing
@testable import RadialModel

@Suite struct FingerprintTests {
    func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    @Test func sha256MatchesTheStandardVectors() {
        var a = SHA256(); a.update(Array("abc".utf8))
        #expect(hex(a.finish()) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        var b = SHA256(); b.update(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
        #expect(hex(b.finish()) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        // Fed in uneven pieces, a million 'a's.
        var c = SHA256()
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        for i in 0..<1000 { c.update(Array(chunk.prefix(i % 2 == 0 ? 999 : 1000))) }
        c.update([UInt8](repeating: UInt8(ascii: "a"), count: 500))
        #expect(hex(c.finish()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func fingerprintTellsModelsApart() throws {
        func write(_ seed: UInt64) throws -> String {
            var spec = TinyModelSpec(); spec.seed = seed
            let path = try TestSupport.tempDir() + "/m.gguf"
            try spec.write(to: path)
            return path
        }
        let a = try GGUFFile(path: try write(1)).fingerprint
        let a2 = try GGUFFile(path: try write(1)).fingerprint
        let b = try GGUFFile(path: try write(2)).fingerprint
        #expect(a == a2 && a.count == 64)
        #expect(a != b, "same shapes and metadata, other weights")
    }

    @Test func evenSlicesTileTheLayers() {
        #expect((0..<3).map { LayerRange.evenSlice($0, of: 3, layers: 30).description } == ["0-9", "10-19", "20-29"])
        #expect((0..<3).map { LayerRange.evenSlice($0, of: 3, layers: 10).description } == ["0-3", "4-6", "7-9"])
    }
}
