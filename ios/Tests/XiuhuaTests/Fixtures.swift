import Foundation
import XCTest
import Xiuhua

let grid = "grid-1"

func actor(_ user: String, _ name: String, _ role: String, _ device: String) -> Actor {
    Actor(user: user, name: name, role: role, device: device)
}

let wangActor = actor("u-wang", "王伟", "网格员", "phone-wang")
let zhaoActor = actor("u-zhao", "赵敏", "社区工作者", "phone-zhao")
let sunActor = actor("u-sun", "孙书记", "社区书记", "phone-sun")
/// Before enrollment the app knows nobody: a provisional actor, replaced by enrollment.
let provisional = actor("unknown", "未登记", "网格员", "new-phone")

func member(_ name: String, relation: String = "户主", phone: String? = nil, id: String? = nil, tags: [String] = []) -> NewMember {
    NewMember(name: name, gender: "男", birthYear: 1958, phone: phone, idNumber: id, relation: relation, tags: tags)
}

func household(_ building: String, _ unit: String, _ room: String, _ members: NewMember...) -> NewHousehold {
    NewHousehold(address: Address(grid: grid, building: building, unit: unit, room: room), members: members, tags: [], note: "")
}

/// Brings every change of `from` into `to` (what a sync does, without a server).
func exchange(_ from: XiuhuaRepository, _ to: XiuhuaRepository) async throws {
    _ = try await to.applyChanges(try await from.exportAllChanges())
}

/// Runs `body`, which must throw a `XiuhuaError`; returns it (any other outcome fails).
func expectXiuhuaError<T>(_ what: String, file: StaticString = #filePath, line: UInt = #line,
                          _ body: () async throws -> T) async throws -> XiuhuaError {
    do {
        let value = try await body()
        XCTFail("\(what): expected a XiuhuaError, got \(value)", file: file, line: line)
    } catch let e as XiuhuaError {
        return e
    } catch {
        XCTFail("\(what): expected a XiuhuaError, got \(error)", file: file, line: line)
    }
    throw TestError("\(what): no XiuhuaError")
}

struct TestError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A fresh temporary folder, removed by `cleanUp`.
func temporaryFolder(_ prefix: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// The real `xiuhua-server` on loopback, with its own data folder: the station's admin
/// commands and `serve` on a port the kernel picks. The binary comes from XIUHUA_SERVER_BIN
/// (scripts/swift-tests.sh sets it), as in the Kotlin tests.
final class StationServer {
    let bin: String
    let dataDir: URL
    private(set) var url = ""
    private var process: Process?
    private let environment: [String: String]

    init(environment: [String: String] = [:]) throws {
        guard let bin = ProcessInfo.processInfo.environment["XIUHUA_SERVER_BIN"] else {
            throw TestError("XIUHUA_SERVER_BIN is not set (scripts/swift-tests.sh sets it)")
        }
        guard FileManager.default.isExecutableFile(atPath: bin) else { throw TestError("no server binary at \(bin)") }
        self.bin = bin
        self.environment = environment
        dataDir = try temporaryFolder("xiuhua-station")
    }

    private func env() -> [String: String] {
        var e = ProcessInfo.processInfo.environment
        e["XIUHUA_DATA_DIR"] = dataDir.path
        e["XIUHUA_LOG"] = "warn"
        for (k, v) in environment { e[k] = v }
        return e
    }

    /// Runs an admin command; returns its stdout.
    @discardableResult
    func admin(_ args: String...) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: bin)
        p.arguments = args
        p.environment = env()
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw TestError("xiuhua-server \(args.joined(separator: " ")) failed: \(String(decoding: stderr, as: UTF8.self))")
        }
        return String(decoding: stdout, as: UTF8.self)
    }

    /// A one-time enrollment code for `user`.
    func enrollCode(_ user: String) throws -> String {
        let out = try admin("enroll-code", user)
        guard let code = out.split(separator: "\n").first?.trimmingCharacters(in: .whitespaces), !code.isEmpty else {
            throw TestError("enroll-code printed nothing")
        }
        return code
    }

    /// The grid `grid` in a community, with `u-wang` and `u-li` as its grid members.
    func seedDirectory() throws {
        try admin("district", "add", "d-1", "东城片区")
        try admin("community", "add", "c-1", "和平社区", "--district", "d-1")
        try admin("grid", "add", grid, "一网格", "--community", "c-1")
        try admin("user", "add", "u-wang", "王伟")
        try admin("user", "add", "u-li", "李四")
        try admin("grant", "u-wang", "--grid", grid, "--role", "网格员")
        try admin("grant", "u-li", "--grid", grid, "--role", "网格员")
    }

    /// Starts `serve` and waits until it says where it listens.
    func start() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: bin)
        p.arguments = ["serve"]
        var e = env()
        e["XIUHUA_LISTEN"] = "127.0.0.1:0"
        p.environment = e
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        process = p
        let reader = out.fileHandleForReading
        var seen = Data()
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let chunk = reader.availableData
            if chunk.isEmpty { break } // the server exited
            seen.append(chunk)
            let text = String(decoding: seen, as: UTF8.self)
            if let range = text.range(of: #"listening on (http://\S+)"#, options: .regularExpression) {
                url = String(text[range].dropFirst("listening on ".count))
                // Keep draining stdout so that the server never blocks on a full pipe.
                Thread.detachNewThread { while !reader.availableData.isEmpty {} }
                return
            }
        }
        stop()
        throw TestError("the server did not say where it listens: \(String(decoding: seen, as: UTF8.self))")
    }

    func stop() {
        guard let p = process else { return }
        process = nil
        guard p.isRunning else { return }
        // SIGKILL, not terminate(): Foundation spawns the server from a thread of the
        // concurrency pool whose signal mask blocks SIGTERM, and the child inherits the mask,
        // so the server never hears it. Its data folder is thrown away anyway. (Polled:
        // waitUntilExit spins the run loop.)
        kill(p.processIdentifier, SIGKILL)
        while p.isRunning { usleep(10_000) }
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: dataDir)
    }
}

/// A TCP port that accepts connections (the kernel completes them into the listen backlog)
/// and never answers: a station whose server hangs.
final class SilentListener {
    let fd: Int32
    let port: UInt16

    init() throws {
        #if canImport(Glibc)
        let stream = Int32(SOCK_STREAM.rawValue)
        #else
        let stream = SOCK_STREAM
        #endif
        let fd = socket(AF_INET, stream, 0)
        guard fd >= 0 else { throw TestError("socket() failed") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
        }
        guard bound == 0, listen(fd, 16) == 0 else { close(fd); throw TestError("bind/listen failed") }
        let named = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard named == 0 else { close(fd); throw TestError("getsockname failed") }
        self.fd = fd
        port = UInt16(bigEndian: addr.sin_port)
    }

    var url: String { "http://127.0.0.1:\(port)" }

    deinit { close(fd) }
}
