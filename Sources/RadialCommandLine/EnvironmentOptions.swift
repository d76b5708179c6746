import ArgumentParser
import Foundation

/// Command-line options taken from the environment, so that systemd units (`Environment=`, `EnvironmentFile=`)
/// and Kubernetes (`env:`, Secrets) configure a server without a shell building its command line.
///
/// Every long option `--some-name` a command declares can also be given as `RADIAL_SOME_NAME=value`; a flag takes
/// 1/true/yes (set) or 0/false/no (not set). The command line wins: a variable is ignored when its option is on the
/// command line. An empty variable counts as unset. Variables for options the command does not declare are never
/// read, so the other `RADIAL_*` settings of the project are left alone, and so are the variables the code reads
/// itself (`readDirectly`), which keep their own meaning and error handling.
///
/// The options a command declares come from ArgumentParser's own description of the command (the JSON behind
/// `--experimental-dump-help`), so a new option is configurable from the environment with no list to update;
/// the tests check that the description still names the options.
public struct EnvironmentOptions: Sendable {
    /// One option found in the environment: the variable, its value, and the arguments it stands for.
    public struct Setting: Sendable, Equatable {
        public let variable: String
        public let value: String
        public let option: String
        public let arguments: [String]
    }

    /// What turns an option's name into its variable: `kv-budget-mb` into `RADIAL_KV_BUDGET_MB`.
    public static let prefix = "RADIAL_"

    /// Variables the code reads on its own (ModelOptions, resolveToken), which also match an option's name.
    /// Mapping them would change what an existing setting does: RADIAL_AUTH_TOKEN beside `--auth-token-file`
    /// would become "give one, not both", and an unparsable RADIAL_THREADS, ignored today, an error.
    public static let readDirectly: Set<String> = [
        "RADIAL_THREADS", "RADIAL_ACTIVATIONS", "RADIAL_AUTH_TOKEN", "RADIAL_WORKER_AUTH_TOKEN",
    ]

    /// The settings found, in the order the command declares its options.
    public let settings: [Setting]
    /// Variables that were set to something a flag cannot mean (not 1/true/yes/0/false/no), as error messages.
    public let problems: [String]

    /// The settings for `command` in `environment`, leaving out every option `arguments` (the command line, without
    /// the program name) already gives.
    public init(for command: any ParsableArguments.Type, arguments: [String],
                environment: [String: String] = ProcessInfo.processInfo.environment) {
        let given = Self.namesOnCommandLine(arguments)
        var settings: [Setting] = [], problems: [String] = []
        for option in Self.declaredOptions(command) where option.names.allSatisfy({ !given.contains($0) }) {
            for long in option.longNames {
                let variable = Self.variable(for: long)
                guard !Self.readDirectly.contains(variable), let value = environment[variable], !value.isEmpty else { continue }
                if option.isFlag {
                    switch value.lowercased() {
                    case "1", "true", "yes": settings.append(Setting(variable: variable, value: value, option: "--" + long, arguments: ["--" + long]))
                    case "0", "false", "no": break
                    default: problems.append("\(variable)=\(value): --\(long) is a flag; set it to 1, true or yes (or 0, false, no)")
                    }
                } else {
                    settings.append(Setting(variable: variable, value: value, option: "--" + long, arguments: ["--" + long, value]))
                }
                break  // one variable per option, even when it has several names
            }
        }
        self.settings = settings
        self.problems = problems
    }

    /// `RADIAL_` and the long name in capitals, dashes as underscores.
    public static func variable(for longName: String) -> String {
        prefix + longName.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    /// The arguments to parse: the settings' options first, then the command line as given.
    public func arguments(before commandLine: [String]) -> [String] {
        settings.flatMap(\.arguments) + commandLine
    }

    /// A line naming the variables behind the options an error message mentions, so that a bad value set in a unit
    /// file is traced to its variable; nil when the message names none of them.
    public func note(forError message: String) -> String? {
        let blamed = settings.filter { setting in
            // Whole option names only: "--layers" must not match inside "--layers-file".
            message.ranges(of: setting.option).contains { range in
                range.upperBound == message.endIndex || !(message[range.upperBound].isLetter || message[range.upperBound] == "-")
            }
        }
        guard !blamed.isEmpty else { return nil }
        return "Set in the environment: " + blamed.map { "\($0.variable)=\($0.value) (\($0.option))" }.joined(separator: ", ")
    }

    // MARK: - What the command declares

    struct DeclaredOption {
        var names: Set<String>  // as written on a command line: --listen, -h
        var longNames: [String]  // without dashes, in declaration order
        var isFlag: Bool
    }

    /// The options and flags `command` declares (its option groups included), from ArgumentParser's JSON description
    /// of the command (`serializationVersion` 0 of its ToolInfo format). Help and version are not settings.
    static func declaredOptions(_ command: any ParsableArguments.Type) -> [DeclaredOption] {
        struct ToolInfo: Decodable {
            struct Command: Decodable { var arguments: [Argument]? }
            struct Argument: Decodable {
                struct Name: Decodable { var kind: String; var name: String }
                var kind: String
                var names: [Name]?
            }
            var command: Command
        }
        guard let info = try? JSONDecoder().decode(ToolInfo.self, from: Data(command._dumpHelp().utf8)) else { return [] }
        return (info.command.arguments ?? []).compactMap { argument in
            guard argument.kind == "option" || argument.kind == "flag", let names = argument.names else { return nil }
            let longs = names.filter { $0.kind == "long" }.map(\.name)
            guard !longs.isEmpty, !longs.contains("help"), !longs.contains("version") else { return nil }
            let written = names.map { ($0.kind == "long" ? "--" : "-") + $0.name }
            return DeclaredOption(names: Set(written), longNames: longs, isFlag: argument.kind == "flag")
        }
    }

    /// The option names on a command line (`--listen x`, `--listen=x`, `-h`), up to a `--` that ends options.
    static func namesOnCommandLine(_ arguments: [String]) -> Set<String> {
        var names = Set<String>()
        for argument in arguments {
            if argument == "--" { break }
            guard argument.hasPrefix("-") else { continue }
            names.insert(String(argument.split(separator: "=", maxSplits: 1)[0]))
        }
        return names
    }
}

extension AsyncParsableCommand {
    /// `main()` with options also taken from the environment (EnvironmentOptions): parses the settings and the
    /// command line together and runs the command; an error caused by a setting names its variable.
    public static func mainWithEnvironment(environment: [String: String] = ProcessInfo.processInfo.environment) async {
        let commandLine = Array(CommandLine.arguments.dropFirst())
        let fromEnvironment = EnvironmentOptions(for: self, arguments: commandLine, environment: environment)
        if let problem = fromEnvironment.problems.first {
            FileHandle.standardError.write(Data("Error: \(problem)\n".utf8))
            Foundation.exit(ExitCode.validationFailure.rawValue)
        }
        do {
            var command = try await asyncParseAsRoot(fromEnvironment.arguments(before: commandLine))
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            if code != .success, let note = fromEnvironment.note(forError: fullMessage(for: error)) {
                FileHandle.standardError.write(Data("\(fullMessage(for: error))\n\(note)\n".utf8))
                Foundation.exit(code.rawValue)
            }
            exit(withError: error)
        }
    }
}
