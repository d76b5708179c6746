import Foundation
import RadialTestSupport
import Testing

/// `--help` of every command of the three executables, read the way a user reads it: text that reads cleanly at 80
/// columns, and examples that work.
///
/// The text is taken from the built binaries: `--experimental-dump-help` (ArgumentParser's own description of a
/// command, the text `--help` prints before it wraps it) for the commands, their discussions and their examples,
/// and `--help` itself at COLUMNS=80 for how it reads.
///
/// The examples are checked by running them. ArgumentParser has no dry run, and the command types live in
/// executable targets that a test cannot import, so a parse-only check would mean copying the commands; and
/// checking only that each `--flag` exists would pass `--sizes 2048,262144` when the option took `--sizes 2048
/// 262144` (the bug that started this). So each example runs as the built binary with its own arguments, changed
/// only where a real run would be slow or would serve until stopped: `plan(for:)` says, per command, what changes
/// (a model path that does not exist, so the run stops at loading the model; a coordinator address where nothing
/// listens; a serve-echo started for the example to talk to; fewer calls or tokens) and what the run must show to
/// prove it got past parsing and validation. ArgumentParser's usage errors exit 64; none may. An example of a
/// command without a plan fails the test, so a new example gets one.
@Suite struct HelpTextTests {
    static let programs = ["radial", "radial-worker", "radial-coordinator"]

    /// ArgumentParser's `--experimental-dump-help`, the parts read here.
    struct CommandInfo: Decodable {
        struct Argument: Decodable {
            struct Name: Decodable { var kind: String; var name: String }
            var kind: String
            var names: [Name]?
            var abstract: String?
            var discussion: String?
            var shouldDisplay: Bool?
        }
        var superCommands: [String]?
        var commandName: String
        var abstract: String?
        var discussion: String?
        var subcommands: [CommandInfo]?
        var arguments: [Argument]?

        var path: [String] { (superCommands ?? []) + [commandName] }
        var all: [CommandInfo] { [self] + (subcommands ?? []).flatMap(\.all) }
    }

    struct ToolInfo: Decodable { var command: CommandInfo }

    /// Every command of every executable, subcommands included.
    static func commands() throws -> [CommandInfo] {
        try programs.flatMap { program -> [CommandInfo] in
            let dump = try TestPaths.execute(TestPaths.binDir + "/" + program, ["--experimental-dump-help"])
            #expect(dump.status == 0, "\(program) --experimental-dump-help: \(dump.stderr)")
            return try JSONDecoder().decode(ToolInfo.self, from: Data(dump.stdout.utf8)).command.all
        }
    }

    static func help(_ path: [String], columns: Int) throws -> String {
        let result = try TestPaths.execute("/usr/bin/env", ["COLUMNS=\(columns)", TestPaths.binDir + "/" + path[0]] + path.dropFirst() + ["--help"])
        #expect(result.status == 0, "\(path.joined(separator: " ")) --help: \(result.stderr)")
        return result.stdout
    }

    /// A discussion cut into what it is made of: paragraphs (one line each; ArgumentParser wraps them) and
    /// examples. An example is a line "Example: radial ...", or the lines after a line "Example:" (or "Examples:")
    /// up to a blank line; a line ending in " \" goes on on the next.
    struct Discussion {
        var prose: [String] = []
        /// Each example as printed (its lines) and as a command line (the lines joined).
        var examples: [(lines: [String], commandLine: String)] = []

        init(_ text: String) {
            var inExamples = false, pending: [String] = []
            for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
                let line = raw.trimmingCharacters(in: .whitespaces)
                if !pending.isEmpty {
                    pending.append(line)
                } else if line.isEmpty {
                    inExamples = false
                    continue
                } else if line == "Example:" || line == "Examples:" {
                    inExamples = true
                    continue
                } else if line.hasPrefix("Example: ") {
                    pending = [String(line.dropFirst("Example: ".count))]
                } else if inExamples {
                    pending = [line]
                } else {
                    prose.append(line)
                    continue
                }
                if line.hasSuffix(" \\") { continue }
                let joined = pending.map { $0.hasSuffix(" \\") ? String($0.dropLast(2)) : $0 }.joined(separator: " ")
                examples.append((pending, joined))
                pending = []
            }
        }
    }

    /// Paragraphs are single lines (a hard-wrapped one prints ragged once ArgumentParser wraps it again), abstracts
    /// too, and nothing in `--help` is wider than 80 columns, examples included (a wrapped example cannot be pasted).
    @Test func helpReadsCleanlyAt80Columns() async throws {
        // Seconds of child processes: off the cooperative pool (see `blocking`).
        try await blocking {
            for command in try Self.commands() {
                let name = command.path.joined(separator: " ")
                #expect(!(command.abstract ?? "").contains("\n"), "\(name): abstract on more than one line")
                let discussion = Discussion(command.discussion ?? "")
                for line in discussion.prose {
                    #expect(".:?!".contains(line.last!), "\(name): a paragraph is hard-wrapped at '\(line)'")
                }
                for argument in command.arguments ?? [] where argument.shouldDisplay != false {
                    let option = argument.names?.first.map { "--" + $0.name } ?? argument.kind
                    #expect(!(argument.abstract ?? "").contains("\n"), "\(name) \(option): help on more than one line")
                    for line in Discussion(argument.discussion ?? "").prose {
                        #expect(".:?!".contains(line.last!), "\(name) \(option): a paragraph is hard-wrapped at '\(line)'")
                    }
                }
                let help = try Self.help(command.path, columns: 80)
                let lines = help.split(separator: "\n").map(String.init)
                for line in lines where line.count > 80 {
                    Issue.record("\(name) --help at 80 columns: a line of \(line.count): '\(line)'")
                }
                for example in discussion.examples {
                    for line in example.lines where !lines.contains(where: { $0.trimmingCharacters(in: .whitespaces) == line }) {
                        Issue.record("\(name) --help at 80 columns: the example line '\(line)' is wrapped")
                    }
                }
            }
        }
    }

    /// Every example in every `--help` runs (see the suite's comment for how).
    @Test func examplesWork() async throws {
        // Seconds of child processes: off the cooperative pool (see `blocking`).
        try await blocking {
            let commands = try Self.commands()
            var count = 0
            for command in commands {
                for example in Discussion(command.discussion ?? "").examples {
                    count += 1
                    try check(example.commandLine, commands: commands)
                }
                for argument in command.arguments ?? [] {
                    for example in Discussion(argument.discussion ?? "").examples {
                        count += 1
                        try check(example.commandLine, commands: commands)
                    }
                }
            }
            #expect(count >= 10, "only \(count) examples found: is the example syntax still 'Example:' and indented lines?")
        }
    }

    /// List options take comma-separated values; the older space-separated form still parses.
    @Test func listsAreCommaSeparated() async throws {
        // Seconds of child processes: off the cooperative pool (see `blocking`).
        try await blocking {
            let echo = try await ServerProcess.launch(TestPaths.binDir + "/radial", ["serve-echo", "--listen", "127.0.0.1:0"])
            defer { echo.stop() }
            for lists in [["--sizes", "16,32", "--concurrency", "1,2"], ["--sizes", "16", "32", "--concurrency", "1", "2"]] {
                let run = try TestPaths.execute(TestPaths.binDir + "/radial", ["rpc-bench", echo.address, "--calls", "4", "--json"] + lists)
                #expect(run.status == 0, "\(lists): \(run.stderr)")
                let rows = run.stdout.split(separator: "\n").map { String($0) }
                #expect(rows.count == 4 && rows.allSatisfy { $0.contains("\"size_bytes\"") }, "\(lists): \(run.stdout)")
            }
            let help = try Self.help(["radial", "rpc-bench"], columns: 200)
            #expect(help.contains("comma-separated") && help.contains("(default: 2048,262144)"), "\(help)")
        }
    }

    // MARK: - Running an example

    /// How one example runs here: the program's arguments (subcommand first) as changed, and what its output must
    /// show.
    struct Plan {
        var arguments: [String]
        var server: ServerProcess?
        var check: (ProcessResult) -> String?  // nil: as it should be; else what is wrong
    }

    static let missingModel = "/nonexistent/radial-help-example.gguf"

    /// Runs one example and checks it got past parsing and validation.
    func check(_ commandLine: String, commands: [CommandInfo]) throws {
        let words = Self.shellWords(commandLine)
        guard let program = words.first, Self.programs.contains(program) else {
            Issue.record("example '\(commandLine)' does not start with radial, radial-worker or radial-coordinator")
            return
        }
        // The command path: the program, then subcommand names as long as they match.
        var path = [program]
        var node = commands.first { $0.path == [program] }
        while path.count < words.count, let sub = node?.subcommands?.first(where: { $0.commandName == words[path.count] }) {
            path.append(sub.commandName)
            node = sub
        }
        guard let plan = try plan(for: path, arguments: Array(words.dropFirst(path.count))) else {
            Issue.record("example '\(commandLine)': no plan for running `\(path.joined(separator: " "))` examples in HelpTextTests.plan(for:); add one")
            return
        }
        defer { plan.server?.stop() }
        let result = try TestPaths.execute(TestPaths.binDir + "/" + program, plan.arguments)
        let shown = "example '\(commandLine)', run as '\(([program] + plan.arguments).joined(separator: " "))'"
        #expect(result.status != 64 && !result.stderr.contains("Usage:"), "\(shown): a usage error: \(result.stderr)")
        if let problem = plan.check(result) {
            Issue.record("\(shown): \(problem)\nstatus \(result.status)\nstdout: \(result.stdout.suffix(2000))\nstderr: \(result.stderr.suffix(2000))")
        }
    }

    func plan(for path: [String], arguments: [String]) throws -> Plan? {
        var args = arguments
        let subcommand = Array(path.dropFirst())
        func set(_ option: String, _ value: String) {
            if let i = args.firstIndex(of: option), i + 1 < args.count { args[i + 1] = value } else { args += [option, value] }
        }
        /// The run stops at loading the model: past parsing and validation, short of the work.
        func stopsAtTheModel() -> Plan {
            set("--model", Self.missingModel)
            return Plan(arguments: subcommand + args) { r in
                r.status == 1 && r.stderr.contains("model file not found: \(Self.missingModel)") ? nil : "expected 'model file not found'"
            }
        }
        /// A client of a coordinator where none listens: past parsing, failing at the first call.
        func findsNoCoordinator(_ what: String) -> Plan {
            set("--coordinator", "127.0.0.1:1")
            set("--connect-timeout", "0")
            return Plan(arguments: subcommand + args) { r in
                r.status == 1 && r.stderr.contains("\(what) 127.0.0.1:1") ? nil : "expected a failure to reach 127.0.0.1:1"
            }
        }
        let modelHere = args.firstIndex(of: "--model").flatMap { i in i + 1 < args.count ? args[i + 1] : nil }
            .map { $0.hasPrefix("/") ? $0 : TestPaths.packageRoot + "/" + $0 }
            .flatMap { FileManager.default.fileExists(atPath: $0) ? $0 : nil }

        switch path.joined(separator: " ") {
        case "radial run":
            // A real run when the example's model is here (a few tokens), else up to loading it.
            guard let modelHere else { return stopsAtTheModel() }
            set("--model", modelHere)
            set("--max-tokens", "2")
            return Plan(arguments: subcommand + args) { r in r.status == 0 && !r.stdout.isEmpty ? nil : "expected a generation" }
        case "radial tokenize":
            guard let modelHere else { return stopsAtTheModel() }
            set("--model", modelHere)
            return Plan(arguments: subcommand + args) { r in r.status == 0 && r.stdout.contains("\t") ? nil : "expected token ids" }
        case "radial eval", "radial train-router", "radial calibrate-router", "radial profile", "radial engine-bench", "radial-worker",
             "radial-coordinator":
            return stopsAtTheModel()
        case "radial bench" where modelHere == nil:
            return findsNoCoordinator("bench against")
        case "radial generate":
            return findsNoCoordinator("generate on")
        case "radial serve-echo":
            // Served for real on a free port (ServerProcess waits for its 'listening on' line); the run checked is
            // `radial health` against it.
            set("--listen", "127.0.0.1:0")
            let server = try ServerProcess(TestPaths.binDir + "/radial", subcommand + args)
            return Plan(arguments: ["health", server.address], server: server) { r in r.status == 0 ? nil : "expected SERVING" }
        case "radial rpc-bench":
            // Measured for real against a serve-echo started for it, with fewer calls.
            let echo = try ServerProcess(TestPaths.binDir + "/radial", ["serve-echo", "--listen", "127.0.0.1:0"])
            guard let target = args.firstIndex(where: { !$0.hasPrefix("-") }) else { return nil }
            args[target] = echo.address
            set("--calls", "20")
            return Plan(arguments: subcommand + args, server: echo) { r in
                r.status == 0 && r.stdout.split(separator: "\n").count >= 2 ? nil : "expected a table of measurements"
            }
        default:
            return nil
        }
    }

    /// Words of a command line as a POSIX shell splits them (quotes; no variables or globs in examples).
    static func shellWords(_ line: String) -> [String] {
        var words: [String] = [], word = "", inWord = false
        var quote: Character?
        for c in line {
            if let q = quote {
                if c == q { quote = nil } else { word.append(c) }
            } else if c == "\"" || c == "'" {
                quote = c
                inWord = true
            } else if c == " " {
                if inWord { words.append(word) }
                word = ""
                inWord = false
            } else {
                word.append(c)
                inWord = true
            }
        }
        if inWord { words.append(word) }
        return words
    }
}
