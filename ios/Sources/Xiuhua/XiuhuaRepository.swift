import Foundation
@_exported import XiuhuaFFI

/// The app's one entry to the Xiuhua core, with async/await.
///
/// Every call runs the blocking Rust call off the calling actor (a detached task), so it is
/// safe to `await` from the main actor. Errors are `XiuhuaError`; show
/// `error.localizedDescription` (the core's message, see `XiuhuaError.detail`). Open one per
/// process and share it: the Rust side serialises calls and never holds its lock across the
/// network during `sync`.
public final class XiuhuaRepository: Sendable {
    public let store: XiuhuaStore

    public init(store: XiuhuaStore) { self.store = store }

    /// Opens (creating if absent) the store at `path`, encrypted with `key` (from the
    /// Keychain). A wrong key throws `XiuhuaError.WrongKey`.
    public static func open(path: String, key: String?, actor: Actor) async throws -> XiuhuaRepository {
        try await Task.detached(priority: .userInitiated) {
            XiuhuaRepository(store: try XiuhuaStore.open(path: path, key: key, actor: actor))
        }.value
    }

    /// A store in memory only (tests, previews).
    public static func inMemory(actor: Actor) async throws -> XiuhuaRepository {
        try await Task.detached { XiuhuaRepository(store: try XiuhuaStore.openInMemory(actor: actor)) }.value
    }

    /// The allowed values of every domain enum (genders, tags, categories, levels …).
    public static let vocabulary: Vocabulary = XiuhuaFFI.vocabulary()

    private func call<T: Sendable>(_ body: @escaping @Sendable (XiuhuaStore) throws -> T) async throws -> T {
        let store = self.store
        return try await Task.detached(priority: .userInitiated) { try body(store) }.value
    }

    // MARK: observing

    /// Every change: local writes and what syncs and merges bring. The observer is
    /// registered at once and removed when the stream's consumer stops (or the stream is
    /// dropped). Never drops an event (unbounded buffer).
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

    /// Changes that touch document `id` (or may touch anything, after a sync).
    public func changes(of id: String) -> AsyncFilterSequence<AsyncStream<ChangeEvent>> {
        changes().filter { e in e.everything || e.docs.contains { $0.id == id } }
    }

    // MARK: households

    public func createHousehold(_ h: NewHousehold) async throws -> String { try await call { try $0.createHousehold(household: h) } }
    public func addMember(_ household: String, _ m: NewMember) async throws -> String { try await call { try $0.addMember(household: household, member: m) } }
    public func updateMember(_ household: String, member: String, _ m: NewMember) async throws {
        try await call { try $0.updateMember(household: household, memberId: member, member: m) }
    }
    public func setMemberPhone(_ household: String, member: String, phone: String?) async throws {
        try await call { try $0.setMemberPhone(household: household, memberId: member, phone: phone) }
    }
    /// Removes a member entered by mistake; one who moved out or died gets `setMemberStatus`.
    public func removeMember(_ household: String, member: String) async throws {
        try await call { try $0.removeMember(household: household, memberId: member) }
    }
    /// 在册, 迁出 (moved out) or 去世 (deceased): the member stays on record.
    public func setMemberStatus(_ household: String, member: String, status: String) async throws {
        try await call { try $0.setMemberStatus(household: household, memberId: member, status: status) }
    }
    /// The household left the grid (`true`) or came back (`false`).
    public func setHouseholdMovedOut(_ household: String, _ movedOut: Bool) async throws {
        try await call { try $0.setHouseholdMovedOut(household: household, movedOut: movedOut) }
    }
    /// Another address of the grid: moved within it, or a wrong building, unit or room corrected.
    public func moveHousehold(_ household: String, building: String, unit: String, room: String) async throws {
        try await call { try $0.moveHousehold(household: household, building: building, unit: unit, room: room) }
    }
    public func setHouseholdTags(_ household: String, _ tags: [String]) async throws {
        try await call { try $0.setHouseholdTags(household: household, tags: tags) }
    }
    public func setHouseholdNote(_ household: String, _ note: String) async throws {
        try await call { try $0.setHouseholdNote(household: household, note: note) }
    }
    public func addVisit(_ household: String, purpose: String, note: String = "", followUp: String? = nil) async throws -> String {
        try await call { try $0.addVisit(household: household, visit: NewVisit(purpose: purpose, note: note, followUp: followUp)) }
    }
    /// Corrects a visit this user made; someone else's is refused (`XiuhuaError.Refused`).
    public func updateVisit(_ household: String, visit: String, purpose: String, note: String = "", followUp: String? = nil) async throws {
        try await call {
            try $0.updateVisit(household: household, visitId: visit, visit: NewVisit(purpose: purpose, note: note, followUp: followUp))
        }
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

    // MARK: lists, search, coverage, people

    /// The home list of the store's user on `grid`: overdue, due within three days, 督单
    /// reminders not yet answered, reopened by a bad rating, then households not visited this
    /// month, in that order; `HomeItem.reason` says why each is there.
    public func homeList(_ grid: String, limit: UInt32 = 100) async throws -> [HomeItem] {
        try await call { try $0.homeList(grid: grid, limit: limit) }
    }
    /// A page of records, newest first; pass the previous page's `next` as `after`.
    public func recordPage(_ grid: String, filter: RecordFilter = RecordFilter(), after: String? = nil,
                           limit: UInt32 = 50) async throws -> RecordPage {
        try await call { try $0.recordPage(grid: grid, filter: filter, after: after, limit: limit) }
    }
    /// A page of tasks, soonest deadline first; `next` as in `recordPage`.
    public func taskPage(_ grid: String, filter: TaskFilter = TaskFilter(), after: String? = nil,
                         limit: UInt32 = 50) async throws -> TaskPage {
        try await call { try $0.taskPage(grid: grid, filter: filter, after: after, limit: limit) }
    }
    /// Residents (pinyin), addresses, record text and tasks; typed hits, never an ID or phone number.
    public func search(_ query: String, limit: UInt32 = 50) async throws -> [SearchHit] {
        try await call { try $0.search(query: query, limit: limit) }
    }
    /// The record or task a resident's number (or the provisional number it had) names.
    public func findByNumber(_ number: String) async throws -> NumberHit? {
        try await call { try $0.findByNumber(number: number) }
    }
    /// Households visited this month ÷ registered, per grid and building.
    public func visitCoverage(_ grid: String) async throws -> Coverage { try await call { try $0.visitCoverage(grid: grid) } }
    public func notVisited(_ grid: String, building: String? = nil, limit: UInt32 = 200) async throws -> [HouseholdSummary] {
        try await call { try $0.notVisited(grid: grid, building: building, limit: limit) }
    }
    /// The assignee picker: the grid's people (names and roles) as the last sync brought them.
    public func gridPeople(_ grid: String) async throws -> [Person] { try await call { try $0.gridPeople(grid: grid) } }

    // MARK: 民情 records

    public func createRecord(_ r: NewRecord) async throws -> String { try await call { try $0.createRecord(record: r) } }
    public func setRecordStatus(_ id: String, _ status: String) async throws { try await call { try $0.setRecordStatus(record: id, status: status) } }
    public func setRecordDescription(_ id: String, _ description: String) async throws {
        try await call { try $0.setRecordDescription(record: id, description: description) }
    }
    public func setRecordCategory(_ record: String, _ category: String) async throws {
        try await call { try $0.setRecordCategory(record: record, category: category) }
    }
    public func setRecordPlace(_ record: String, _ place: String) async throws {
        try await call { try $0.setRecordPlace(record: record, place: place) }
    }
    public func record(_ id: String) async throws -> RecordDetail { try await call { try $0.record(id: id) } }
    public func records(_ grid: String, status: String? = nil, category: String? = nil, limit: UInt32 = 500) async throws -> [RecordSummary] {
        try await call { try $0.records(grid: grid, status: status, category: category, limit: limit) }
    }

    // MARK: 代办 tasks

    public func createTask(_ t: NewTask) async throws -> String { try await call { try $0.createTask(task: t) } }
    /// 点单 from a 民情 record in one action; the record then shows the task's progress.
    public func orderFromRecord(_ record: String, level: String, title: String? = nil, assignee: String? = nil,
                                deadline: Int64? = nil) async throws -> String {
        try await call {
            try $0.orderFromRecord(record: record, order: OrderFromRecord(level: level, title: title, assignee: assignee,
                                                                          deadline: deadline))
        }
    }
    @discardableResult
    public func taskAction(_ task: String, _ action: TaskAction) async throws -> TaskDetail {
        try await call { try $0.taskAction(task: task, action: action) }
    }
    public func task(_ id: String) async throws -> TaskDetail { try await call { try $0.task(id: id) } }
    public func myTasks(_ user: String) async throws -> [TaskSummary] { try await call { try $0.myTasks(user: user) } }
    public func overdueTasks(_ grid: String) async throws -> [TaskSummary] { try await call { try $0.overdueTasks(grid: grid) } }
    public func tasks(_ grid: String, level: String? = nil, status: String? = nil, limit: UInt32 = 500) async throws -> [TaskSummary] {
        try await call { try $0.tasks(grid: grid, level: level, status: status, limit: limit) }
    }
    public func ledger(_ grid: String) async throws -> Ledger { try await call { try $0.ledger(grid: grid) } }

    // MARK: conflicts and history

    public func householdsWithConflicts(_ grid: String) async throws -> [HouseholdSummary] { try await call { try $0.householdsWithConflicts(grid: grid) } }
    public func recordsWithConflicts(_ grid: String) async throws -> [RecordSummary] { try await call { try $0.recordsWithConflicts(grid: grid) } }
    public func tasksWithConflicts(_ grid: String) async throws -> [TaskSummary] { try await call { try $0.tasksWithConflicts(grid: grid) } }
    public func conflicts(_ doc: String) async throws -> [FieldConflict] { try await call { try $0.conflicts(doc: doc) } }
    public func resolveConflict(_ doc: String, path: String, choice: UInt32) async throws {
        try await call { try $0.resolveConflict(doc: doc, path: path, choice: choice) }
    }
    public func history(_ doc: String) async throws -> [HistoryEntry] { try await call { try $0.history(doc: doc) } }
    /// Every change of every document (tests, diagnostics: two stores merge without a server).
    public func exportAllChanges() async throws -> [RemoteChange] { try await call { try $0.exportAllChanges() } }
    public func applyChanges(_ changes: [RemoteChange]) async throws -> MergeSummary { try await call { try $0.applyChanges(changes: changes) } }

    // MARK: sync

    /// Exchanges the one-time code printed at the station for this device's identity. A
    /// mistyped or used code throws `InvalidInput` with `field == "code"`.
    public func enroll(serverUrl: String, code: String, deviceName: String) async throws -> Enrollment {
        try await call { try $0.enroll(serverUrl: serverUrl, code: code, deviceName: deviceName) }
    }
    public func grants() async throws -> [Grant] { try await call { try $0.grants() } }
    public func grids() async throws -> [String] { try await call { try $0.grids() } }
    public func syncStatus() async throws -> SyncStatus { try await call { try $0.syncStatus() } }
    /// How big the first sync will be, per granted grid (documents, bytes before
    /// compression): ask it right after `enroll` to offer "download now or on Wi-Fi".
    public func firstSyncEstimate() async throws -> [GridEstimate] { try await call { try $0.firstSyncEstimate() } }
    public func actor() async throws -> Actor { try await call { try $0.actor() } }
    public func nowMs() async throws -> Int64 { try await call { try $0.nowMs() } }
    public func setServerUrl(_ url: String) async throws { try await call { try $0.setServerUrl(serverUrl: url) } }
    /// Signs out and erases the residents' data from this phone. With work not yet sent to
    /// the station it throws `XiuhuaError.UnsyncedWork` (say how much; offer to sync) unless
    /// `force`, the user's explicit confirmation that this work is deleted.
    @discardableResult
    public func signOut(force: Bool = false) async throws -> SignedOut {
        try await call { try $0.signOut(force: force) }
    }
    /// Work not yet sent to the station: what a sign-out or a handover would delete.
    public func unsyncedWork() async throws -> UnsyncedWork { try await call { try $0.unsyncedWork() } }
    /// Whether the clock was anchored to the server's time (at enrollment or a sync).
    public func clockAnchored() async throws -> Bool { try await call { try $0.clockAnchored() } }
    /// Replaces the phone's wall clock (tests, simulations, a trusted network time). Called
    /// with the store's lock held: return at once, never call back into the store.
    public func setTimeSource(_ nowMs: @escaping @Sendable () -> Int64) async throws {
        let source = ClockSource(nowMs)
        try await call { try $0.setTimeSource(source: source) }
    }
    /// What the last sync that ended did, finished or failed.
    public func lastSync() async throws -> LastSync? { try await call { try $0.lastSync() } }
    /// The documents whose changes the server refused (show them; let the user discard).
    public func refusedChanges() async throws -> [RefusedChange] { try await call { try $0.refusedChanges() } }
    /// Drops what the server refused of `doc`; the next sync fetches the server's copy.
    @discardableResult
    public func discardRefused(_ doc: String) async throws -> UInt64 { try await call { try $0.discardRefused(doc: doc) } }
    /// Sends a held refused document again at the next sync.
    public func retryRefused(_ doc: String) async throws { try await call { try $0.retryRefused(doc: doc) } }
    /// Changes kept aside because their grant was lost.
    public func setAside() async throws -> [SetAside] { try await call { try $0.setAside() } }
    @discardableResult
    public func discardSetAside(_ doc: String) async throws -> UInt64 { try await call { try $0.discardSetAside(doc: doc) } }

    /// Runs one whole sync. `onProgress` is called on the syncing thread before each
    /// request: hop to the main actor before touching the UI, and return quickly.
    ///
    /// Cancelling the calling task stops the sync at its next request boundary
    /// (`cancelSync`): what was received is kept, the status says the sync did not finish
    /// (no new `lastSuccessMs`; `lastError` says it was cancelled), and this throws
    /// `CancellationError`, whatever the sync answered. A task cancelled before the sync
    /// starts sends nothing.
    public func sync(onProgress: @escaping @Sendable (SyncPhase, UInt64, UInt64?) -> Void = { _, _, _ in }) async throws -> SyncReport {
        let listener = ProgressListener(onProgress)
        let store = self.store
        let outcome: Result<SyncReport, Error> = await withTaskCancellationHandler {
            if Task.isCancelled { return .failure(CancellationError()) }
            // The detached task is not cancelled with this one: the handler below stops the
            // Rust loop instead, so that it ends between two requests, never inside a write.
            // (A cancellation between this check and the start of the Rust sync, which
            // clears the flag, lets that sync run to its end; this still throws.)
            return await Task.detached(priority: .userInitiated) {
                Result { try store.sync(progress: listener) }
            }.value
        } onCancel: {
            store.cancelSync()
        }
        if Task.isCancelled { throw CancellationError() }
        return try outcome.get()
    }

    /// Connect and whole-request timeouts of the following syncs, in ms (0 = the defaults:
    /// 10 s to connect, 120 s per request).
    public func setSyncTimeouts(connectMs: UInt64, requestMs: UInt64) async throws {
        try await call { $0.setSyncTimeouts(connectMs: connectMs, requestMs: requestMs) }
    }

    /// Trusts only this PEM certificate (the station's own, or its CA) for enrollment and
    /// sync instead of the public roots; `nil` goes back to those. Not a certificate:
    /// `InvalidInput`, nothing changed. Set at each launch, like the timeouts.
    public func trustStationCertificate(pem: String?) async throws {
        try await call { try $0.trustStationCertificate(pem: pem) }
    }

    /// Allows plain `http://` to these hosts, addresses or networks (`192.168.10.0/24`) of
    /// a station LAN the user chose, besides this device; everything else needs `https://`
    /// and is refused before connecting (`InvalidInput`).
    public func allowPlainHttp(hosts: [String]) async throws {
        try await call { try $0.allowPlainHttp(hosts: hosts) }
    }
}

/// What the app does about a failed sync or enrollment (the same mapping as the Kotlin
/// layer's `syncAction`).
public enum SyncAction: Sendable, Equatable {
    /// Nothing is lost: show the error, sync again later (network, server busy or down).
    case retryLater
    /// Show the enrollment screen (a code from the station).
    case enroll
    /// Enroll again with a new code for the same user; keep the store, its work syncs after.
    case reenroll
    /// The device was revoked: delete the store, then show the enrollment screen.
    case wipe
    /// Ask the user to update the app (the server speaks a newer protocol).
    case updateApp
    /// The server refused this request for good: show the reason (and any refused changes).
    case showRefusal
    /// Fix the input the error names (e.g. a mistyped enrollment code in `field`).
    case fixInput
    /// The enrollment code is another user's while this phone holds unsynced work: sync it
    /// as its user first, or sign out with force.
    case syncFirst
    /// Not a sync problem (storage, a bug): show the message.
    case showError
}

extension XiuhuaError {
    /// The core's readable message (what `localizedDescription` shows).
    public var detail: String {
        switch self {
        case .InvalidInput(let detail, _, _), .NotFound(let detail), .Refused(let detail),
             .WrongKey(let detail), .NotXiuhuaDatabase(let detail), .SchemaTooNew(let detail, _, _),
             .Storage(let detail), .Network(let detail), .NotEnrolled(let detail),
             .ReenrollmentNeeded(let detail), .Revoked(let detail), .UpgradeRequired(let detail),
             .ServerRefused(let detail, _, _), .UnsyncedWork(let detail, _, _),
             .AlreadyOpen(let detail), .Sync(let detail), .Internal(let detail):
            return detail
        }
    }

    /// The one place that maps an error to what the sync screen does.
    public var syncAction: SyncAction {
        switch self {
        case .Network, .Sync: return .retryLater
        case .NotEnrolled: return .enroll
        case .ReenrollmentNeeded: return .reenroll
        case .Revoked: return .wipe
        case .UpgradeRequired: return .updateApp
        case .ServerRefused(_, let status, _): return status >= 500 || status == 429 ? .retryLater : .showRefusal
        case .InvalidInput: return .fixInput
        case .UnsyncedWork: return .syncFirst
        default: return .showError
        }
    }
}

private final class StreamObserver: StoreObserver, Sendable {
    private let continuation: AsyncStream<ChangeEvent>.Continuation
    init(_ c: AsyncStream<ChangeEvent>.Continuation) { continuation = c }
    func onChange(event: ChangeEvent) throws { continuation.yield(event) }
}

private final class ProgressListener: SyncProgressListener, Sendable {
    private let body: @Sendable (SyncPhase, UInt64, UInt64?) -> Void
    init(_ body: @escaping @Sendable (SyncPhase, UInt64, UInt64?) -> Void) { self.body = body }
    func onProgress(phase: SyncPhase, done: UInt64, total: UInt64?) throws { body(phase, done, total) }
}

private final class ClockSource: TimeSource, Sendable {
    private let body: @Sendable () -> Int64
    init(_ body: @escaping @Sendable () -> Int64) { self.body = body }
    func nowMs() -> Int64 { body() }
}

// The generated error has the core's text as `description` (Rust's Display) but does not
// declare CustomStringConvertible, so its `errorDescription` (String(reflecting:)) — and so
// `localizedDescription` — printed the enum case with all its fields. Declaring the
// conformance makes both the core's readable text (checked by the Swift tests).
extension XiuhuaError: CustomStringConvertible {}
