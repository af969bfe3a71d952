import SwiftUI
import Xiuhua

/// What every screen shares: the repository, the current grid and user, the last error, and
/// a revision counter that bumps on every change so screens reload (mirrors Android's AppState).
@MainActor
public final class AppModel: ObservableObject {
    public let repo: XiuhuaRepository
    @Published public var grid: String?
    @Published public var user = ""
    @Published public var error: String?
    /// A message that is not an error (a saved record's number to give the resident).
    @Published public var notice: String?
    @Published public private(set) var revision = 0
    private var watcher: Task<Void, Never>?

    public init(repo: XiuhuaRepository) {
        self.repo = repo
        watcher = Task { [weak self] in
            guard let stream = self?.repo.changes() else { return }
            for await _ in stream { self?.revision += 1 }
        }
    }

    deinit { watcher?.cancel() }

    public func refreshIdentity() async {
        do {
            user = try await repo.actor().user
            if grid == nil { grid = try await repo.grids().first }
        } catch { show(error) }
    }

    /// Runs a write; a refused one shows the core's readable message.
    public func act(_ body: @escaping () async throws -> Void) {
        Task { do { try await body() } catch { show(error) } }
    }

    public func load<T>(_ body: () async throws -> T) async -> T? {
        do { return try await body() } catch { show(error); return nil }
    }

    func show(_ e: Error) { error = e.localizedDescription }
}

func formatTime(_ ms: Int64?) -> String {
    guard let ms else { return "—" }
    let f = DateFormatter()
    f.dateFormat = "yyyy-MM-dd HH:mm"
    return f.string(from: Date(timeIntervalSince1970: TimeInterval(ms) / 1000))
}

func maskId(_ id: String?) -> String? {
    guard let id else { return nil }
    guard id.count > 7 else { return "****" }
    return String(id.prefix(3)) + String(repeating: "*", count: id.count - 7) + String(id.suffix(4))
}
