// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Radial",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "radial", targets: ["radial"]),
        .executable(name: "radial-worker", targets: ["radial-worker"]),
        .executable(name: "radial-coordinator", targets: ["radial-coordinator"]),
        .library(name: "RadialModel", targets: ["RadialModel"]),
        .library(name: "RadialRPC", targets: ["RadialRPC"]),
        .library(name: "RadialProtocol", targets: ["RadialProtocol"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The coordinator's OpenAI-compatible HTTP API and every process's /metrics.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
    ],
    targets: [
        // C libraries from Debian packages, reached through module maps (see docs/PLATFORM-NOTES in README).
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        // gRPC core: no pkgConfig on purpose — its flags are refused by SwiftPM; the module map links grpc/gpr.
        .systemLibrary(name: "CGRPC", providers: [.apt(["libgrpc-dev"])]),
        .systemLibrary(name: "CProtobufC", providers: [.apt(["libprotobuf-c-dev"])]),

        // The model: GGUF, dequantisation, Llama layers, KV caches, tokenizer, sampler. The only BLAS user.
        .target(name: "RadialModel", dependencies: ["COpenBLAS", "CRadialKernels"]),
        // Quantised matrix-vector kernels for decode (AVX2 with a portable fallback). In C because Swift's
        // SIMD integer-to-float conversions compile to out-of-line scalar calls (measured 4x slower).
        .target(name: "CRadialKernels", cSettings: [.unsafeFlags(["-O3"])]),

        // Tiny C: slice/byte-buffer helpers and macro values gRPC core's headers do not export to Swift.
        .target(name: "CGRPCShim", dependencies: ["CGRPC"],
                linkerSettings: [.linkedLibrary("grpc"), .linkedLibrary("gpr")]),
        // protoc-c output for Protos/, committed; regenerate with scripts/gen-protos.sh (CI checks it is current).
        .target(name: "CRadialProto", dependencies: ["CProtobufC"],
                linkerSettings: [.linkedLibrary("protobuf-c")]),
        // Async Swift over gRPC core: server, channel, unary + server streaming, deadlines, status, TLS, auth.
        // Bytes in, bytes out; no C type crosses its public API.
        .target(name: "RadialRPC", dependencies: ["CGRPCShim"]),
        // Radial's messages as Swift value types, converted to and from the protobuf-c structs in one place,
        // with validation; the Health and Diagnostics services.
        .target(name: "RadialProtocol", dependencies: ["RadialRPC", "RadialModel", "CRadialProto"]),

        // A worker: one shard of layers, a KV cache per session, radial.Worker over gRPC.
        // Residual profiling, the router network, its distillation, routing policy and evaluation.
        .target(name: "RadialRouter", dependencies: ["RadialModel"]),
        .target(name: "RadialWorker", dependencies: [
            "RadialModel", "RadialRPC", "RadialProtocol", "RadialRouter", .product(name: "Metrics", package: "swift-metrics"),
        ]),
        // The coordinator: sessions, continuous batching, the pipeline over workers, radial.Coordinator.
        .target(name: "RadialCoordinator", dependencies: [
            "RadialModel", "RadialRPC", "RadialProtocol", "RadialRouter", "RadialWorker",
            .product(name: "Logging", package: "swift-log"), .product(name: "Metrics", package: "swift-metrics"),
        ]),
        // HTTP beside gRPC (Hummingbird): the coordinator's OpenAI-compatible API, and /metrics (Prometheus) on the
        // coordinator and workers. Only the two servers link it.
        .target(name: "RadialHTTP", dependencies: [
            "RadialCoordinator", "RadialModel", "RadialProtocol", "RadialRPC",
            .product(name: "Hummingbird", package: "hummingbird"), .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"), .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // Flags and process plumbing the three executables share (TLS/auth options, serving until SIGTERM).
        .target(name: "RadialCommandLine", dependencies: [
            "RadialModel", "RadialRPC", "RadialProtocol", "RadialRouter", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        .executableTarget(
            name: "radial",
            dependencies: [
                "RadialModel", "RadialRPC", "RadialProtocol", "RadialCoordinator", "RadialCommandLine", "RadialRouter",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(
            name: "radial-worker",
            dependencies: ["RadialWorker", "RadialRouter", "RadialCommandLine", "RadialHTTP",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "Hummingbird", package: "hummingbird")]),
        .executableTarget(
            name: "radial-coordinator",
            dependencies: ["RadialCoordinator", "RadialRouter", "RadialCommandLine", "RadialHTTP",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "Hummingbird", package: "hummingbird")]),

        .testTarget(
            name: "RadialModelTests",
            dependencies: ["RadialModel", "RadialRouter", "RadialTestSupport"],
            resources: [.copy("Resources")]),
        // Router training, its file, routed execution and the evaluator, against the numpy reference.
        .testTarget(
            name: "RadialRouterTests",
            dependencies: ["RadialModel", "RadialRouter", "RadialTestSupport", "RadialCommandLine"]),
        // Every message through its protobuf-c encoding and back, and what validation refuses.
        .testTarget(
            name: "RadialProtocolTests",
            dependencies: ["RadialProtocol", "RadialModel", "RadialRPC"]),
        .testTarget(
            name: "RadialRPCTests",
            dependencies: ["RadialRPC", "RadialProtocol", "RadialTestSupport"]),
        // The pipeline and the scheduler over in-process stages: no process, no socket.
        .testTarget(
            name: "RadialCoordinatorTests",
            dependencies: ["RadialModel", "RadialRPC", "RadialProtocol", "RadialRouter", "RadialWorker", "RadialCoordinator", "RadialTestSupport"]),
        // Workers, coordinator and CLI as real processes on loopback, against the in-process engine; the flag
        // plumbing they share (settings from the environment).
        .testTarget(
            name: "RadialClusterTests",
            dependencies: ["RadialModel", "RadialRPC", "RadialProtocol", "RadialRouter", "RadialWorker", "RadialCoordinator", "RadialTestSupport",
                           "RadialCommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // Starting and stopping the executables from tests; tiny routers.
        .target(name: "RadialTestSupport", dependencies: ["RadialModel", "RadialRouter"], path: "Tests/RadialTestSupport"),
    ],
    swiftLanguageModes: [.v6]
)
