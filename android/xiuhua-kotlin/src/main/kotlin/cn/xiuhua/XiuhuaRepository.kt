package cn.xiuhua

import cn.xiuhua.ffi.Actor
import cn.xiuhua.ffi.Building
import cn.xiuhua.ffi.ChangeEvent
import cn.xiuhua.ffi.Enrollment
import cn.xiuhua.ffi.FieldConflict
import cn.xiuhua.ffi.Grant
import cn.xiuhua.ffi.GridEstimate
import cn.xiuhua.ffi.HistoryEntry
import cn.xiuhua.ffi.Household
import cn.xiuhua.ffi.HouseholdSummary
import cn.xiuhua.ffi.LastSync
import cn.xiuhua.ffi.Ledger
import cn.xiuhua.ffi.MergeSummary
import cn.xiuhua.ffi.NewHousehold
import cn.xiuhua.ffi.NewMember
import cn.xiuhua.ffi.NewRecord
import cn.xiuhua.ffi.NewTask
import cn.xiuhua.ffi.NewVisit
import cn.xiuhua.ffi.NumberHit
import cn.xiuhua.ffi.OrderFromRecord
import cn.xiuhua.ffi.RecordDetail
import cn.xiuhua.ffi.RecordSummary
import cn.xiuhua.ffi.RefusedChange
import cn.xiuhua.ffi.RemoteChange
import cn.xiuhua.ffi.SignedOut
import cn.xiuhua.ffi.ResidentHit
import cn.xiuhua.ffi.StoreObserver
import cn.xiuhua.ffi.SyncPhase
import cn.xiuhua.ffi.SyncProgressListener
import cn.xiuhua.ffi.SyncReport
import cn.xiuhua.ffi.SyncStatus
import cn.xiuhua.ffi.TaskAction
import cn.xiuhua.ffi.TaskDetail
import cn.xiuhua.ffi.TaskSummary
import cn.xiuhua.ffi.TimeSource
import cn.xiuhua.ffi.TimelineEntry
import cn.xiuhua.ffi.UnsyncedWork
import cn.xiuhua.ffi.Vocabulary
import cn.xiuhua.ffi.XiuhuaException
import cn.xiuhua.ffi.XiuhuaStore
import cn.xiuhua.ffi.vocabulary
import cn.xiuhua.ffi.Coverage
import cn.xiuhua.ffi.HomeItem
import cn.xiuhua.ffi.Person
import cn.xiuhua.ffi.RecordFilter
import cn.xiuhua.ffi.RecordPage
import cn.xiuhua.ffi.SearchHit
import cn.xiuhua.ffi.TaskFilter
import cn.xiuhua.ffi.TaskPage
import kotlinx.coroutines.CoroutineDispatcher
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.buffer
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.flow.conflate
import kotlinx.coroutines.flow.filter
import kotlinx.coroutines.flow.flowOn
import kotlinx.coroutines.flow.map
import kotlinx.coroutines.flow.onStart
import kotlinx.coroutines.withContext
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.NonCancellable
import kotlinx.coroutines.awaitCancellation
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.ensureActive
import kotlinx.coroutines.isActive
import kotlinx.coroutines.launch

/**
 * The app's one entry to the Xiuhua core: every call is a `suspend` function that runs the
 * blocking Rust call on [io] (by default [Dispatchers.IO]), so it is safe to call from the
 * main thread. Errors arrive as [XiuhuaException]; show [XiuhuaException.readableMessage].
 *
 * Screens observe with [changes] or the `live…` flows, which re-query whenever a local
 * write or a sync changes the data.
 *
 * Open one per process (the store is shared by all threads; the Rust side serialises calls)
 * and [close] it when the process ends.
 */
class XiuhuaRepository(
    val store: XiuhuaStore,
    private val io: CoroutineDispatcher = Dispatchers.IO,
) : AutoCloseable {
    companion object {
        /**
         * Opens (creating if absent) the store at [path]. Pass the [key] from the Android
         * Keystore to encrypt it at rest; a wrong key throws [XiuhuaException.WrongKey].
         */
        suspend fun open(
            path: String,
            key: String?,
            actor: Actor,
            io: CoroutineDispatcher = Dispatchers.IO,
        ): XiuhuaRepository = withContext(io) { XiuhuaRepository(XiuhuaStore.open(path, key, actor), io) }

        /** A store in memory only (tests, previews). */
        suspend fun inMemory(actor: Actor, io: CoroutineDispatcher = Dispatchers.IO): XiuhuaRepository =
            withContext(io) { XiuhuaRepository(XiuhuaStore.openInMemory(actor), io) }

        /** The allowed values of every domain enum (genders, tags, categories, levels …). */
        val vocabulary: Vocabulary by lazy { vocabulary() }
    }

    private suspend fun <T> call(block: XiuhuaStore.() -> T): T = withContext(io) { store.block() }

    override fun close() = store.close()

    // ----- observing -----

    /**
     * Every change to the store: local writes and what syncs and merges bring. Cold: the
     * observer is registered on collection and removed when the collector stops. Never
     * drops an event (unbounded buffer); collect it on any dispatcher.
     */
    fun changes(): Flow<ChangeEvent> = callbackFlow {
        val observer = object : StoreObserver {
            override fun onChange(event: ChangeEvent) {
                trySend(event)
            }
        }
        val handle = store.addObserver(observer)
        awaitClose { store.removeObserver(handle) }
    }.buffer(kotlinx.coroutines.channels.Channel.UNLIMITED)

    /** Changes that touch document [id] (or may touch anything, after a sync). */
    fun changesOf(id: String): Flow<ChangeEvent> =
        changes().filter { e -> e.everything || e.docs.any { it.id == id } }

    /** Changes that touch documents of [kind] (`household`, `record`, `task`). */
    fun changesOfKind(kind: String): Flow<ChangeEvent> =
        changes().filter { e -> e.everything || e.docs.any { it.kind == kind } }

    /** Runs [query] now and again after every matching change; the latest result wins. */
    fun <T> live(trigger: Flow<ChangeEvent> = changes(), query: XiuhuaStore.() -> T): Flow<T> =
        trigger.map { }.onStart { emit(Unit) }.conflate().map { store.query() }.flowOn(io)

    fun liveBuildings(grid: String): Flow<List<Building>> = live(changesOfKind("household")) { buildings(grid) }
    fun liveHouseholds(grid: String, building: String, unit: String?): Flow<List<HouseholdSummary>> =
        live(changesOfKind("household")) { householdsIn(grid, building, unit) }
    fun liveHousehold(id: String): Flow<Household> = live(changesOf(id)) { household(id) }
    fun liveTask(id: String): Flow<TaskDetail> = live(changesOf(id)) { task(id) }
    fun liveMyTasks(user: String): Flow<List<TaskSummary>> = live(changesOfKind("task")) { myTasks(user) }
    fun liveOverdue(grid: String): Flow<List<TaskSummary>> = live(changesOfKind("task")) { overdueTasks(grid) }
    fun liveSyncStatus(): Flow<SyncStatus> = live { syncStatus() }

    // ----- households -----

    suspend fun createHousehold(household: NewHousehold): String = call { createHousehold(household) }
    suspend fun addMember(household: String, member: NewMember): String = call { addMember(household, member) }
    suspend fun updateMember(household: String, memberId: String, member: NewMember) =
        call { updateMember(household, memberId, member) }
    suspend fun setMemberPhone(household: String, memberId: String, phone: String?) =
        call { setMemberPhone(household, memberId, phone) }
    /** Removes a member entered by mistake; one who moved out or died gets [setMemberStatus]. */
    suspend fun removeMember(household: String, memberId: String) = call { removeMember(household, memberId) }
    /** 在册, 迁出 (moved out) or 去世 (deceased): the member stays on record. */
    suspend fun setMemberStatus(household: String, memberId: String, status: String) =
        call { setMemberStatus(household, memberId, status) }
    /** The household left the grid (`true`) or came back (`false`). */
    suspend fun setHouseholdMovedOut(household: String, movedOut: Boolean) =
        call { setHouseholdMovedOut(household, movedOut) }
    /** Another address of the grid: moved within it, or a wrong building, unit or room corrected. */
    suspend fun moveHousehold(household: String, building: String, unit: String, room: String) =
        call { moveHousehold(household, building, unit, room) }
    suspend fun setHouseholdTags(household: String, tags: List<String>) = call { setHouseholdTags(household, tags) }
    suspend fun setHouseholdNote(household: String, note: String) = call { setHouseholdNote(household, note) }
    suspend fun addVisit(household: String, purpose: String, note: String = "", followUp: String? = null): String =
        call { addVisit(household, NewVisit(purpose, note, followUp)) }
    /** Corrects a visit this user made; someone else's is refused ([XiuhuaException.Refused]). */
    suspend fun updateVisit(household: String, visitId: String, purpose: String, note: String = "", followUp: String? = null) =
        call { updateVisit(household, visitId, NewVisit(purpose, note, followUp)) }
    suspend fun household(id: String): Household = call { household(id) }
    suspend fun buildings(grid: String): List<Building> = call { buildings(grid) }
    suspend fun units(grid: String, building: String): List<String> = call { units(grid, building) }
    suspend fun householdsIn(grid: String, building: String, unit: String? = null): List<HouseholdSummary> =
        call { householdsIn(grid, building, unit) }
    suspend fun searchResidents(query: String, limit: Int = 50): List<ResidentHit> =
        call { searchResidents(query, limit.coerceAtLeast(0).toUInt()) }
    suspend fun householdHistory(id: String): List<TimelineEntry> = call { householdHistory(id) }

    // ----- 民情 records -----

    suspend fun createRecord(record: NewRecord): String = call { createRecord(record) }
    suspend fun setRecordStatus(record: String, status: String) = call { setRecordStatus(record, status) }
    suspend fun setRecordDescription(record: String, description: String) =
        call { setRecordDescription(record, description) }
    suspend fun setRecordCategory(record: String, category: String) = call { setRecordCategory(record, category) }
    suspend fun setRecordPlace(record: String, place: String) = call { setRecordPlace(record, place) }
    suspend fun record(id: String): RecordDetail = call { record(id) }
    suspend fun records(grid: String, status: String? = null, category: String? = null, limit: Int = 200): List<RecordSummary> =
        call { records(grid, status, category, limit.coerceAtLeast(0).toUInt()) }

    // ----- 代办 tasks and the five orders -----

    suspend fun createTask(task: NewTask): String = call { createTask(task) }
    /** 点单 from a 民情 record in one action; the record then shows the task's progress. */
    suspend fun orderFromRecord(
        record: String,
        level: String,
        title: String? = null,
        assignee: String? = null,
        deadline: Long? = null,
    ): String = call { orderFromRecord(record, OrderFromRecord(level, title, assignee, deadline)) }
    suspend fun taskAction(task: String, action: TaskAction): TaskDetail = call { taskAction(task, action) }
    suspend fun assign(task: String, assignee: String) = taskAction(task, TaskAction.Assign(assignee))
    suspend fun accept(task: String) = taskAction(task, TaskAction.Accept)
    suspend fun note(task: String, text: String) = taskAction(task, TaskAction.Note(text))
    suspend fun supervise(task: String, text: String, newDeadline: Long? = null) =
        taskAction(task, TaskAction.Supervise(text, newDeadline))
    suspend fun complete(task: String, result: String) = taskAction(task, TaskAction.Complete(result))
    suspend fun inquire(task: String, text: String, sendBack: Boolean = false) =
        taskAction(task, TaskAction.Inquire(text, sendBack))
    suspend fun rate(task: String, score: Int, comment: String = "") = taskAction(task, TaskAction.Rate(score, comment))
    suspend fun escalate(task: String, tier: String, unit: String? = null) =
        taskAction(task, TaskAction.Escalate(tier, unit))
    suspend fun cancel(task: String, reason: String) = taskAction(task, TaskAction.Cancel(reason))
    suspend fun task(id: String): TaskDetail = call { task(id) }
    suspend fun myTasks(user: String): List<TaskSummary> = call { myTasks(user) }
    suspend fun overdueTasks(grid: String): List<TaskSummary> = call { overdueTasks(grid) }
    suspend fun tasks(grid: String, level: String? = null, status: String? = null, limit: Int = 200): List<TaskSummary> =
        call { tasks(grid, level, status, limit.coerceAtLeast(0).toUInt()) }
    suspend fun ledger(grid: String): Ledger = call { ledger(grid) }

    // ----- lists, search, coverage, people -----

    /**
     * The home list of the store's user on [grid]: overdue, due within three days, 督单
     * reminders not yet answered, reopened by a bad rating, then households not visited this
     * month — in that order; [HomeItem.reason] says why each is there.
     */
    suspend fun homeList(grid: String, limit: Int = 100): List<HomeItem> =
        call { homeList(grid, limit.coerceAtLeast(0).toUInt()) }
    /** A page of records, newest first; pass the previous page's [RecordPage.next] as [after]. */
    suspend fun recordPage(grid: String, filter: RecordFilter = RecordFilter(), after: String? = null, limit: Int = 50): RecordPage =
        call { recordPage(grid, filter, after, limit.coerceAtLeast(0).toUInt()) }
    /** A page of tasks, soonest deadline first; [TaskPage.next] as in [recordPage]. */
    suspend fun taskPage(grid: String, filter: TaskFilter = TaskFilter(), after: String? = null, limit: Int = 50): TaskPage =
        call { taskPage(grid, filter, after, limit.coerceAtLeast(0).toUInt()) }
    /** Residents (pinyin), addresses, record text and tasks; typed hits, never an ID or phone number. */
    suspend fun search(query: String, limit: Int = 50): List<SearchHit> =
        call { search(query, limit.coerceAtLeast(0).toUInt()) }
    /** The record or task a resident's number (or the provisional number it had) names. */
    suspend fun findByNumber(number: String): NumberHit? = call { findByNumber(number) }
    suspend fun visitCoverage(grid: String): Coverage = call { visitCoverage(grid) }
    suspend fun notVisited(grid: String, building: String? = null, limit: Int = 200): List<HouseholdSummary> =
        call { notVisited(grid, building, limit.coerceAtLeast(0).toUInt()) }
    /** The assignee picker: the grid's people (names and roles) as the last sync brought them. */
    suspend fun gridPeople(grid: String): List<Person> = call { gridPeople(grid) }

    // ----- conflicts and history -----

    suspend fun householdsWithConflicts(grid: String): List<HouseholdSummary> = call { householdsWithConflicts(grid) }
    suspend fun recordsWithConflicts(grid: String): List<RecordSummary> = call { recordsWithConflicts(grid) }
    suspend fun tasksWithConflicts(grid: String): List<TaskSummary> = call { tasksWithConflicts(grid) }
    suspend fun conflicts(doc: String): List<FieldConflict> = call { conflicts(doc) }
    suspend fun resolveConflict(doc: String, path: String, choice: Int) =
        call { resolveConflict(doc, path, choice.coerceAtLeast(0).toUInt()) }
    suspend fun history(doc: String): List<HistoryEntry> = call { history(doc) }
    suspend fun exportAllChanges(): List<RemoteChange> = call { exportAllChanges() }
    suspend fun applyChanges(changes: List<RemoteChange>): MergeSummary = call { applyChanges(changes) }

    // ----- sync -----

    /**
     * Enrolls this device with the one-time code printed at the station. A phone holding
     * the same user's data keeps it and its unsynced work (`kind` is `Continued`: the
     * answer to [SyncAction.REENROLL]); a code for another user erases a fully synced
     * phone (`HandedOver`) and is refused with [XiuhuaException.UnsyncedWork] otherwise.
     */
    suspend fun enroll(serverUrl: String, code: String, deviceName: String): Enrollment =
        call { enroll(serverUrl, code, deviceName) }
    suspend fun grants(): List<Grant> = call { grants() }
    suspend fun grids(): List<String> = call { grids() }
    suspend fun syncStatus(): SyncStatus = call { syncStatus() }
    /**
     * How big the first sync will be, per granted grid (documents, bytes before
     * compression): ask it right after [enroll] to offer "download now or on Wi-Fi".
     */
    suspend fun firstSyncEstimate(): List<GridEstimate> = call { firstSyncEstimate() }
    suspend fun setServerUrl(url: String) = call { setServerUrl(url) }
    /**
     * Signs out and erases the residents' data from this phone. With work not yet sent to
     * the station it throws [XiuhuaException.UnsyncedWork] (say how much; offer to sync)
     * unless [force], the user's explicit confirmation that this work is deleted.
     */
    suspend fun signOut(force: Boolean = false): SignedOut = call { signOut(force) }

    /** Work not yet sent to the station: what a sign-out or a handover would delete. */
    suspend fun unsyncedWork(): UnsyncedWork = call { unsyncedWork() }
    suspend fun nowMs(): Long = call { nowMs() }

    /** Whether the clock was anchored to the server's time (at enrollment or a sync). */
    suspend fun clockAnchored(): Boolean = call { clockAnchored() }

    /** Replaces the phone's wall clock (tests, simulations, a trusted network time). */
    suspend fun setTimeSource(nowMs: () -> Long) = call {
        setTimeSource(object : TimeSource {
            override fun nowMs(): Long = nowMs()
        })
    }

    /** What the last sync that ended did, finished or failed. */
    suspend fun lastSync(): LastSync? = call { lastSync() }

    /** The documents whose changes the server refused (show them; let the user discard). */
    suspend fun refusedChanges(): List<RefusedChange> = call { refusedChanges() }

    /** Drops what the server refused of [doc]; the next sync fetches the server's copy. */
    suspend fun discardRefused(doc: String): Long = call { discardRefused(doc).toLong() }

    /** Sends a held refused document again at the next sync. */
    suspend fun retryRefused(doc: String) = call { retryRefused(doc) }

    /**
     * Runs one whole sync on [io]. [onProgress] is called on that thread: post to the UI.
     * Cancelling the calling coroutine stops the sync at its next request boundary
     * (`cancelSync`): what was received is kept, the status says the sync did not finish,
     * and the blocking call returns with a `Sync` error of code `cancelled`, after which
     * the coroutine's CancellationException is thrown.
     */
    suspend fun sync(onProgress: (phase: SyncPhase, done: Long, total: Long?) -> Unit = { _, _, _ -> }): SyncReport =
        coroutineScope {
            // Cancelled with the caller, it stops the sync; cancelled at the end, nothing.
            val scope = this
            val watcher = launch(start = CoroutineStart.UNDISPATCHED) {
                try {
                    awaitCancellation()
                } finally {
                    if (!scope.isActive) store.cancelSync()
                }
            }
            val outcome = try {
                runCatching {
                    withContext(io + NonCancellable) {
                        store.sync(object : SyncProgressListener {
                            override fun onProgress(phase: SyncPhase, done: ULong, total: ULong?) {
                                onProgress(phase, done.toLong(), total?.toLong())
                            }
                        })
                    }
                }
            } finally {
                watcher.cancel()
            }
            ensureActive() // cancelled: CancellationException, whatever the sync answered
            outcome.getOrThrow()
        }

    /** Connect and whole-request timeouts of the following syncs, in ms (0 = defaults). */
    suspend fun setSyncTimeouts(connectMs: Long, requestMs: Long) =
        call { setSyncTimeouts(connectMs.toULong(), requestMs.toULong()) }

    /**
     * Trusts only this PEM certificate (the station's own, or its CA) for enrollment and
     * sync, instead of the public roots bundled in the library; `null` goes back to those.
     * Not a certificate: [XiuhuaException.InvalidInput], nothing changed. Set at each launch
     * from the app's settings, like the timeouts.
     */
    suspend fun trustStationCertificate(pem: String?) = call { trustStationCertificate(pem) }

    /**
     * Allows plain `http://` to these hosts, addresses or networks (`192.168.10.0/24`) of a
     * station LAN the user chose, besides this device; everything else needs `https://` and
     * is refused before connecting ([XiuhuaException.InvalidInput]).
     */
    suspend fun allowPlainHttp(hosts: List<String>) = call { allowPlainHttp(hosts) }
}

/** The readable text of the error (the core's message), for a toast or a form field. */
val XiuhuaException.readableMessage: String
    get() = when (this) {
        is XiuhuaException.InvalidInput -> detail
        is XiuhuaException.NotFound -> detail
        is XiuhuaException.Refused -> detail
        is XiuhuaException.WrongKey -> detail
        is XiuhuaException.NotXiuhuaDatabase -> detail
        is XiuhuaException.SchemaTooNew -> detail
        is XiuhuaException.Storage -> detail
        is XiuhuaException.Network -> detail
        is XiuhuaException.NotEnrolled -> detail
        is XiuhuaException.ReenrollmentNeeded -> detail
        is XiuhuaException.Revoked -> detail
        is XiuhuaException.UpgradeRequired -> detail
        is XiuhuaException.ServerRefused -> detail
        is XiuhuaException.UnsyncedWork -> detail
        is XiuhuaException.AlreadyOpen -> detail
        is XiuhuaException.Sync -> detail
        is XiuhuaException.Internal -> detail
    }

/** What the app does about a failed sync or enrollment. */
enum class SyncAction {
    /** Nothing is lost: show the error, sync again later (network, server busy or down). */
    RETRY_LATER,
    /** Show the enrollment screen (a code from the station). */
    ENROLL,
    /** Enroll again with a new code for the same user; keep the store, its work syncs after. */
    REENROLL,
    /** The device was revoked: delete the store, then show the enrollment screen. */
    WIPE,
    /** Ask the user to update the app (the server speaks a newer protocol). */
    UPDATE_APP,
    /** The server refused this request for good: show the reason (and any refused changes). */
    SHOW_REFUSAL,
    /** Fix the input the error names (e.g. a mistyped enrollment code in `field`). */
    FIX_INPUT,
    /**
     * The enrollment code is for another user while this phone holds unsynced work
     * (`changes`, `documents`): sync it as its user first, or sign out with force.
     */
    SYNC_FIRST,
    /** Not a sync problem (storage, a bug): show the message. */
    SHOW_ERROR,
}

/** The one place that maps an error to what the sync screen does. */
val XiuhuaException.syncAction: SyncAction
    get() = when (this) {
        is XiuhuaException.Network -> SyncAction.RETRY_LATER
        is XiuhuaException.Sync -> SyncAction.RETRY_LATER
        is XiuhuaException.NotEnrolled -> SyncAction.ENROLL
        is XiuhuaException.ReenrollmentNeeded -> SyncAction.REENROLL
        is XiuhuaException.Revoked -> SyncAction.WIPE
        is XiuhuaException.UpgradeRequired -> SyncAction.UPDATE_APP
        is XiuhuaException.ServerRefused ->
            if (status.toInt() >= 500 || status.toInt() == 429) SyncAction.RETRY_LATER else SyncAction.SHOW_REFUSAL
        is XiuhuaException.InvalidInput -> SyncAction.FIX_INPUT
        is XiuhuaException.UnsyncedWork -> SyncAction.SYNC_FIRST
        else -> SyncAction.SHOW_ERROR
    }
