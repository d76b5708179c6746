import RadialModel
import RadialRouter

/// A router distilled from a tiny model in about a second: pseudo-random token windows, a narrow network, two
/// rounds. No layer always runs while tracing, so the router learns to skip any of them.
public enum TinyRouter {
    /// `configure` changes the recipe before distilling (labels, always-run layers, the curve's skip rates).
    public static func distil(modelPath: String, blockSize: Int = 1,
                              configure: (inout RouterDistiller) -> Void = { _ in }) throws -> (model: LlamaModel, router: Router) {
        let file = try GGUFFile(path: modelPath)
        let model = try LlamaModel(file: file)
        let windows = TokenWindows(windows: (0..<8).map { w in (0..<32).map { 3 + ($0 * 31 + w * 17 + $0 * $0) % 250 } })
        var distiller = RouterDistiller()
        distiller.trainer.width = 16
        distiller.trainer.epochs = 4
        distiller.rounds = 2
        distiller.onPolicySkipRate = 0.2
        distiller.alwaysRun = LayerSet()
        distiller.blockSize = blockSize
        configure(&distiller)
        let router = try distiller.distil(model: model, modelFingerprint: file.fingerprint, windows: windows, windowLength: 32)
        return (model, router)
    }
}
