import ArgumentParser
import Foundation
import Logging
import RadialRPC

/// How a process logs: level and format. Every log line of the process, gRPC core's included, goes through
/// swift-log to one handler that writes one line per event on standard error.
public struct LoggingOptions: ParsableArguments {
    public init() {}
    @Option(name: .customLong("log-level"), help: "Least severe level written: trace, debug, info, notice, warning, error or critical.")
    public var level: Logger.Level = .info
    @Option(name: .customLong("log-format"), help: "text (one readable line per event) or json (one JSON object per line, for log shippers).")
    public var format: LogLineFormat = .text

    /// Installs the handler for the whole process and routes gRPC core's messages into it (call once, first).
    public func bootstrap() {
        let (level, format) = (self.level, self.format)
        LoggingSystem.bootstrap { label in LineLogHandler(label: label, level: level, format: format) }
        let grpc = Logger(label: "grpc")
        GRPCCoreLog.route { severity, file, line, message in
            let level: Logger.Level = severity == .error ? .error : severity == .info ? .info : .debug
            grpc.log(level: level, "\(message)", metadata: ["file": "\((file as NSString).lastPathComponent):\(line)"])
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

public enum LogLineFormat: String, ExpressibleByArgument, Sendable, CaseIterable {
    case text, json
}

/// One line per event on standard error. text: `2026-12-02T01:02:03.456Z info radial-coordinator: message k=v`;
/// json: `{"ts":"…","level":"info","logger":"…","msg":"…","k":"v"}`.
public struct LineLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let format: LogLineFormat

    public init(label: String, level: Logger.Level, format: LogLineFormat) {
        self.label = label
        self.logLevel = level
        self.format = format
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let provided = metadataProvider?.get() { fields.merge(provided) { $1 } }
        if let extra = event.metadata { fields.merge(extra) { $1 } }
        let line = Self.format(format, time: Date(), level: event.level, label: label, message: event.message.description, fields: fields)
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// The line for one event, newline included.
    public static func format(_ format: LogLineFormat, time: Date, level: Logger.Level, label: String, message: String,
                              fields: Logger.Metadata) -> String {
        let stamp = time.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
        let keys = fields.keys.sorted()
        switch format {
        case .text:
            let extra = keys.map { " \($0)=\(fields[$0]!)" }.joined()
            return "\(stamp) \(level) \(label): \(message)\(extra)\n"
        case .json:
            var object: [String: String] = ["ts": stamp, "level": level.rawValue, "logger": label, "msg": message]
            for key in keys where object[key] == nil { object[key] = "\(fields[key]!)" }
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
            return String(decoding: data, as: UTF8.self) + "\n"
        }
    }
}
