import Foundation
@_exported import XiuhuaFFI

/// The app's one entry to the Xiuhua core, with async/await.
///
/// Every call runs the blocking Rust call off the calling actor (a detached task), so it is
/// safe to `await` from the main actor. Errors are `XiuhuaError`; show
/// `error.localizedDescription` (the core's message). Open one per process and share it: the
/// Rust side serialises calls and never holds its lock across the network during `sync`.
public final class XiuhuaRepository: @unchecked Sendable {
    public let store: XiuhuaStore

    public init(store: XiuhuaStore) { self.store = store }

    /// Opens (creating if absent) the store at `path`, encrypted with `key` (from the
    /// Keychain). A wrong key throws `XiuhuaError.WrongKey`.
    public static func open(path: String, key: String?, actor: Actor) async throws -> XiuhuaRepository {
        try await Task.detached(priority: .userInitiated) {
            XiuhuaRepository(store: try XiuhuaStore.open(path: path, key: key, actor: actor))
        }.value
    }

    public static func inMemory(actor: Actor) async throws -> XiuhuaRepository {
        try await Task.detached { XiuhuaRepository(store: try XiuhuaStore.openInMemory(actor: actor)) }.value
    }

    /// The allowed values of every domain enum.
    public static let vocabulary: Vocabulary = XiuhuaFFI.vocabulary()

    private func call<T: Sendable>(_ body: @escaping @Sendable (XiuhuaStore) throws -> T) async throws -> T {
        let store = self.store
        return try await Task.detached(priority: .userInitiated) { try body(store) }.value
    }

    // MARK: observing

    /// Every change: local writes and what syncs and merges bring. The observer is removed
    /// when the stream's consumer stops.
    public func changes() -> AsyncStream<ChangeEvent> {
        AsyncStream(bufferingPolicy: .unbounded) { continuation in
            let observer = StreamObserver(continuation)
            do {
                let handle = try store.addObserver(observer: observer)
                let store = self.store
                continuation.onTermination = { _ in try? store.removeObserver(handle: handle) }
            } catch {
                continuation.finish()
            }
        }
    }

    // MARK: households

    public func createHousehold(_ h: NewHousehold) async throws -> String { try await call { try $0.createHousehold(household: h) } }
    public func addMember(_ household: String, _ m: NewMember) async throws -> String { try await call { try $0.addMember(household: household, member: m) } }
    public func setMemberPhone(_ household: String, member: String, phone: String?) async throws {
        try await call { try $0.setMemberPhone(household: household, memberId: member, phone: phone) }
    }
    public func addVisit(_ household: String, purpose: String, note: String = "", followUp: String? = nil) async throws -> String {
        try await call { try $0.addVisit(household: household, visit: NewVisit(purpose: purpose, note: note, followUp: followUp)) }
    }
    public func household(_ id: String) async throws -> Household { try await call { try $0.household(id: id) } }
    public func buildings(_ grid: String) async throws -> [Building] { try await call { try $0.buildings(grid: grid) } }
    public func units(_ grid: String, _ building: String) async throws -> [String] { try await call { try $0.units(grid: grid, building: building) } }
    public func households(_ grid: String, _ building: String, unit: String?) async throws -> [HouseholdSummary] {
        try await call { try $0.householdsIn(grid: grid, building: building, unit: unit) }
    }
    public func searchResidents(_ query: String, limit: UInt32 = 50) async throws -> [ResidentHit] {
        try await call { try $0.searchResidents(query: query, limit: limit) }
    }
    public func householdHistory(_ id: String) async throws -> [TimelineEntry] { try await call { try $0.householdHistory(id: id) } }

    // MARK: 民情 records

    public func createRecord(_ r: NewRecord) async throws -> String { try await call { try $0.createRecord(record: r) } }
    public func setRecordStatus(_ id: String, _ status: String) async throws { try await call { try $0.setRecordStatus(record: id, status: status) } }
    public func records(_ grid: String, status: String? = nil, category: String? = nil) async throws -> [RecordSummary] {
        try await call { try $0.records(grid: grid, status: status, category: category, limit: 500) }
    }

    // MARK: 代办 tasks

    public func createTask(_ t: NewTask) async throws -> String { try await call { try $0.createTask(task: t) } }
    @discardableResult
    public func taskAction(_ task: String, _ action: TaskAction) async throws -> TaskDetail {
        try await call { try $0.taskAction(task: task, action: action) }
    }
    public func task(_ id: String) async throws -> TaskDetail { try await call { try $0.task(id: id) } }
    public func myTasks(_ user: String) async throws -> [TaskSummary] { try await call { try $0.myTasks(user: user) } }
    public func overdueTasks(_ grid: String) async throws -> [TaskSummary] { try await call { try $0.overdueTasks(grid: grid) } }
    public func tasks(_ grid: String, level: String? = nil, status: String? = nil) async throws -> [TaskSummary] {
        try await call { try $0.tasks(grid: grid, level: level, status: status, limit: 500) }
    }
    public func ledger(_ grid: String) async throws -> Ledger { try await call { try $0.ledger(grid: grid) } }

    // MARK: conflicts and history

    public func householdsWithConflicts(_ grid: String) async throws -> [HouseholdSummary] { try await call { try $0.householdsWithConflicts(grid: grid) } }
    public func tasksWithConflicts(_ grid: String) async throws -> [TaskSummary] { try await call { try $0.tasksWithConflicts(grid: grid) } }
    public func conflicts(_ doc: String) async throws -> [FieldConflict] { try await call { try $0.conflicts(doc: doc) } }
    public func resolveConflict(_ doc: String, path: String, choice: UInt32) async throws {
        try await call { try $0.resolveConflict(doc: doc, path: path, choice: choice) }
    }
    public func history(_ doc: String) async throws -> [HistoryEntry] { try await call { try $0.history(doc: doc) } }

    // MARK: sync

    public func enroll(serverUrl: String, code: String, deviceName: String) async throws -> Enrollment {
        try await call { try $0.enroll(serverUrl: serverUrl, code: code, deviceName: deviceName) }
    }
    public func grids() async throws -> [String] { try await call { try $0.grids() } }
    public func syncStatus() async throws -> SyncStatus { try await call { try $0.syncStatus() } }
    public func actor() async throws -> Actor { try await call { try $0.actor() } }

    /// Runs one whole sync. `onProgress` is called on the syncing thread: hop to the main
    /// actor before touching the UI. Cancelling the task stops the sync at its next request
    /// boundary (`cancelSync`): what was received is kept and the status says the sync did
    /// not finish; the call then throws a `Sync` error of code `cancelled`.
    public func sync(onProgress: @escaping @Sendable (SyncPhase, UInt64, UInt64?) -> Void = { _, _, _ in }) async throws -> SyncReport {
        let listener = ProgressListener(onProgress)
        let store = self.store
        return try await withTaskCancellationHandler {
            try await call { try $0.sync(progress: listener) }
        } onCancel: {
            store.cancelSync()
        }
    }

    /// Connect and whole-request timeouts of the following syncs, in ms (0 = defaults).
    public func setSyncTimeouts(connectMs: UInt64, requestMs: UInt64) async throws {
        try await call { $0.setSyncTimeouts(connectMs: connectMs, requestMs: requestMs) }
    }
}

private final class StreamObserver: StoreObserver, @unchecked Sendable {
    private let continuation: AsyncStream<ChangeEvent>.Continuation
    init(_ c: AsyncStream<ChangeEvent>.Continuation) { continuation = c }
    func onChange(event: ChangeEvent) throws { continuation.yield(event) }
}

private final class ProgressListener: SyncProgressListener, @unchecked Sendable {
    private let body: @Sendable (SyncPhase, UInt64, UInt64?) -> Void
    init(_ body: @escaping @Sendable (SyncPhase, UInt64, UInt64?) -> Void) { self.body = body }
    func onProgress(phase: SyncPhase, done: UInt64, total: UInt64?) throws { body(phase, done, total) }
}
