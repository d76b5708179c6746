import CRadialProto
import RadialRPC

/// The wire protocol's version. Bump it when a message changes meaning (adding fields does not).
public enum ProtocolVersion {
    public static let current: UInt32 = 3
}

/// Carried by every request that depends on the model or on the protocol's meaning.
public struct Handshake: Sendable, Equatable {
    public var protocolVersion: UInt32
    public var modelFingerprint: String

    public init(protocolVersion: UInt32 = ProtocolVersion.current, modelFingerprint: String) {
        self.protocolVersion = protocolVersion
        self.modelFingerprint = modelFingerprint
    }

    /// FAILED_PRECONDITION naming the mismatch when a peer speaks another version or serves another model.
    public func check(against mine: Handshake, peer: String = "the peer") throws {
        if protocolVersion != mine.protocolVersion {
            throw RPCError.failedPrecondition(
                "\(peer) speaks Radial protocol version \(protocolVersion), this process speaks \(mine.protocolVersion)")
        }
        if modelFingerprint != mine.modelFingerprint {
            throw RPCError.failedPrecondition(
                "\(peer) serves model \(modelFingerprint.prefix(16)), this process serves \(mine.modelFingerprint.prefix(16)) (another model file)")
        }
    }

    func c(_ arena: Arena) -> UnsafeMutablePointer<Radial__Handshake> {
        var m = Radial__Handshake()
        radial__handshake__init(&m)
        m.protocol_version = protocolVersion
        m.model_fingerprint = arena.string(modelFingerprint)
        return arena.message(m)
    }

    /// Reads a required handshake field.
    static func from(_ p: UnsafeMutablePointer<Radial__Handshake>?, field: String) throws -> Handshake {
        guard let p else { throw invalid(field, "missing (every request carries protocol version and model fingerprint)") }
        return Handshake(protocolVersion: p.pointee.protocol_version, modelFingerprint: text(p.pointee.model_fingerprint))
    }
}
