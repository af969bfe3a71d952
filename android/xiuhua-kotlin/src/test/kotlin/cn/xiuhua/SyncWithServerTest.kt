package cn.xiuhua

import cn.xiuhua.ffi.EnrollmentKind
import cn.xiuhua.ffi.NewRecord
import cn.xiuhua.ffi.NewTask
import cn.xiuhua.ffi.RefusedChange
import cn.xiuhua.ffi.SyncPhase
import cn.xiuhua.ffi.XiuhuaException
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import java.io.BufferedReader
import java.io.File
import java.nio.file.Files
import java.util.concurrent.TimeUnit

/**
 * The real `xiuhua-server` on loopback: the station's admin enrolls two phones, which sync
 * through it. The binary comes from XIUHUA_SERVER_BIN (scripts/kotlin-tests.sh builds it).
 */
class StationServer(private val bin: String) : AutoCloseable {
    val dataDir: File = Files.createTempDirectory("xiuhua-station").toFile()
    private var process: Process? = null
    lateinit var url: String

    /** Runs an admin command; returns its stdout. */
    fun admin(vararg args: String): String {
        val p = ProcessBuilder(listOf(bin) + args)
            .also { it.environment()["XIUHUA_DATA_DIR"] = dataDir.path }
            .redirectErrorStream(false)
            .start()
        val out = p.inputStream.bufferedReader().readText()
        val err = p.errorStream.bufferedReader().readText()
        check(p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0) { "xiuhua-server ${args.joinToString(" ")} failed: $err" }
        return out
    }

    /** District d-1, community c-1 named [community], grid [grid]. */
    fun seedGrid(community: String, grid: String = GridWorkerDayTest.GRID) {
        admin("district", "add", "d-1", "东城片区")
        admin("community", "add", "c-1", community, "--district", "d-1")
        admin("grid", "add", grid, "一网格", "--community", "c-1")
    }

    /** A user with [role] on [grid] (limited to [buildings] for a 楼门长); returns a fresh enrollment code. */
    fun userWithCode(user: String, name: String, role: String, vararg buildings: String, grid: String = GridWorkerDayTest.GRID): String {
        admin("user", "add", user, name)
        admin(*(listOf("grant", user, "--grid", grid, "--role", role) + buildings.flatMap { listOf("--building", it) }).toTypedArray())
        return admin("enroll-code", user).lines().first().trim()
    }

    fun start() {
        val pb = ProcessBuilder(bin, "serve")
        pb.environment()["XIUHUA_DATA_DIR"] = dataDir.path
        pb.environment()["XIUHUA_LISTEN"] = "127.0.0.1:0"
        pb.environment()["XIUHUA_LOG"] = "warn"
        pb.redirectError(ProcessBuilder.Redirect.INHERIT)
        val p = pb.start()
        process = p
        val reader: BufferedReader = p.inputStream.bufferedReader()
        val deadline = System.currentTimeMillis() + 30_000
        while (System.currentTimeMillis() < deadline) {
            val line = reader.readLine() ?: break
            val m = Regex("listening on (http://\\S+)").find(line)
            if (m != null) {
                url = m.groupValues[1]
                // Keep draining stdout so the server never blocks on a full pipe.
                Thread { reader.forEachLine { } }.apply { isDaemon = true }.start()
                return
            }
        }
        throw TestFailure("the server did not say where it listens")
    }

    fun stop() {
        process?.let { it.destroy(); it.waitFor(10, TimeUnit.SECONDS); if (it.isAlive) it.destroyForcibly() }
        process = null
    }

    override fun close() {
        stop()
        dataDir.deleteRecursively()
    }
}

object SyncWithServerTest {
    const val GRID = GridWorkerDayTest.GRID

    fun register(suite: Suite) {
        suite.test("sync at the station: enroll two phones, push, bootstrap, pull, honest status") {
            val bin = System.getenv("XIUHUA_SERVER_BIN")
                ?: throw TestFailure("XIUHUA_SERVER_BIN is not set (scripts/kotlin-tests.sh sets it)")
            check(File(bin).canExecute()) { "no server binary at $bin" }
            StationServer(bin).use { station -> runBlocking { day(station) } }
        }
        suite.test("the scripted day: register, visit, record, a numbered task on the home list, found by number on a second phone") {
            val bin = System.getenv("XIUHUA_SERVER_BIN")
                ?: throw TestFailure("XIUHUA_SERVER_BIN is not set (scripts/kotlin-tests.sh sets it)")
            StationServer(bin).use { station -> runBlocking { scriptedDay(station) } }
        }
        suite.test("a 楼门长's write outside their buildings is refused on the phone, in the server's words") {
            val bin = System.getenv("XIUHUA_SERVER_BIN")
                ?: throw TestFailure("XIUHUA_SERVER_BIN is not set (scripts/kotlin-tests.sh sets it)")
            StationServer(bin).use { station -> runBlocking { buildingLeader(station) } }
        }
        suite.test("https by default: plain http only to loopback and the allowed LAN; a station certificate can be pinned") {
            runBlocking { transportRules() }
        }
        suite.test("a worker on two grids holds both, and each action carries the role held on its grid") {
            val bin = System.getenv("XIUHUA_SERVER_BIN")
                ?: throw TestFailure("XIUHUA_SERVER_BIN is not set (scripts/kotlin-tests.sh sets it)")
            StationServer(bin).use { station -> runBlocking { twoGrids(station) } }
        }
    }

    private suspend fun transportRules() {
        val dir = Files.createTempDirectory("xiuhua-transport")
        val phone = XiuhuaRepository.open(
            dir.resolve("t.db").toString(), "k-t",
            GridWorkerDayTest.actor("unknown", "未登记", "网格员", "new-phone"),
        )
        try {
            // TEST-NET-1: nothing answers there, so only the refusal can be fast.
            val lan = "http://192.0.2.10:9"
            val refused = expectThrows<XiuhuaException.InvalidInput>("plain http to a LAN host is refused") {
                runBlocking { phone.enroll(lan, "CODE", "手机") }
            }
            check(refused.readableMessage.contains("https://")) { refused.readableMessage }
            expectThrows<XiuhuaException.InvalidInput>("not a host") {
                runBlocking { phone.allowPlainHttp(listOf("192.0.2.0/24", "不是 地址")) }
            }
            expectThrows<XiuhuaException.InvalidInput>("a refused list changes nothing") {
                runBlocking { phone.enroll(lan, "CODE", "手机") }
            }
            phone.allowPlainHttp(listOf("192.0.2.0/24"))
            phone.setSyncTimeouts(300, 600)
            expectThrows<XiuhuaException.Network>("allowed: it tries to connect") {
                runBlocking { phone.enroll(lan, "CODE", "手机") }
            }
            phone.allowPlainHttp(emptyList())
            expectThrows<XiuhuaException.InvalidInput>("loopback only again") {
                runBlocking { phone.enroll(lan, "CODE", "手机") }
            }
            expectThrows<XiuhuaException.InvalidInput>("not a certificate") {
                runBlocking { phone.trustStationCertificate("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n") }
            }
            phone.trustStationCertificate(File("core/tests/fixtures/tls/station.pem").readText())
            expectThrows<XiuhuaException.Network>("a pinned certificate, nothing listening") {
                runBlocking { phone.enroll("https://127.0.0.1:9", "CODE", "手机") }
            }
            phone.trustStationCertificate(null)
        } finally {
            phone.close()
            dir.toFile().deleteRecursively()
        }
    }

    private suspend fun buildingLeader(station: StationServer) {
        station.seedGrid("和平社区")
        station.admin("building", "add", GRID, "3号楼")
        val code = station.userWithCode("u-chen", "陈楼长", "楼门长", "3号楼")
        station.start()
        val dir = Files.createTempDirectory("xiuhua-leader")
        val chen = XiuhuaRepository.open(
            dir.resolve("chen.db").toString(), "k-chen",
            GridWorkerDayTest.actor("unknown", "未登记", "网格员", "new-phone"),
        )
        try {
            chen.enroll(station.url, code, "陈的手机")
            val mine = chen.createHousehold(GridWorkerDayTest.household("3号楼", "1单元", "101", GridWorkerDayTest.member("吴一")))
            val refused = expectThrows<XiuhuaException.Refused>("a household in 9号楼") {
                runBlocking { chen.createHousehold(GridWorkerDayTest.household("9号楼", "1单元", "101", GridWorkerDayTest.member("郑二"))) }
            }
            check(refused.readableMessage.endsWith("may write only buildings [3号楼], not building 9号楼; nothing was stored")) {
                refused.readableMessage
            }
            expectThrows<XiuhuaException.Refused>("moving theirs out of 3号楼") {
                runBlocking { chen.moveHousehold(mine, "9号楼", "1单元", "101") }
            }
            checkEq("3号楼", chen.household(mine).address.building, "it stays where it was")
            checkEq(1L, chen.syncStatus().pendingChanges, "only the household in 3号楼 waits")
            val r = chen.sync()
            checkEq(1uL, r.pushed, "and the station takes it")
            checkEq(emptyList<RefusedChange>(), chen.refusedChanges(), "nothing refused at the station")
        } finally {
            chen.close()
            dir.toFile().deleteRecursively()
        }
    }

    private suspend fun scriptedDay(station: StationServer) {
        station.seedGrid("罗河社区")
        val codeWang = station.userWithCode("u-wang", "王伟", "网格员")
        val codeLi = station.userWithCode("u-li", "李四", "网格员")
        station.start()
        val dir = Files.createTempDirectory("xiuhua-scripted-day")
        val provisional = GridWorkerDayTest.actor("unknown", "未登记", "网格员", "new-phone")
        val wang = XiuhuaRepository.open(dir.resolve("wang.db").toString(), "k-wang", provisional)
        val li = XiuhuaRepository.open(dir.resolve("li.db").toString(), "k-li", provisional)
        try {
            wang.enroll(station.url, codeWang, "王伟的手机")
            li.enroll(station.url, codeLi, "李四的手机")
            // Morning at the station: a sync hands the phone its block of numbers.
            wang.sync()
            // Out on the grid, offline: a new tenant's household, a visit, a concern.
            val hh = wang.createHousehold(
                GridWorkerDayTest.household(
                    "5号楼", "2单元", "302",
                    GridWorkerDayTest.member("韩梅", phone = "13912345678"),
                    GridWorkerDayTest.member("韩小雨", relation = "子女"),
                ),
            )
            wang.addVisit(hh, "新租户入户登记")
            // A mistyped phone, corrected: history says which field, from what to what.
            val han = wang.household(hh).members.first { it.name == "韩梅" }.id
            wang.setMemberPhone(hh, han, "13912345679")
            val fixed = wang.history(hh).last().fields.single()
            checkEq(Triple("members[韩梅].phone", "13912345678", "13912345679"), Triple(fixed.field, fixed.old, fixed.new), "old → new")
            val rec = wang.createRecord(NewRecord(GRID, "设施报修", "楼道声控灯坏了", "韩梅", hh, "5号楼", "5号楼2单元楼道"))
            val recNumber = wang.record(rec).number ?: throw TestFailure("the record has a number")
            check(Regex("^罗河-\\d{4}-\\d{6}$").matches(recNumber)) { "a real number offline: $recNumber" }
            // 点单: the record becomes a task, numbered too, assigned to wang, due tomorrow.
            val task = wang.orderFromRecord(rec, "上门办", assignee = "u-wang", deadline = wang.nowMs() + 24 * 3_600_000L)
            val detail = wang.task(task)
            val number = detail.number ?: throw TestFailure("the task has a number")
            check(number != recNumber && number.startsWith("罗河-")) { "its own number: $number" }
            checkEq(rec, detail.sourceRecord, "the task links to the record")
            checkEq("处理中", wang.record(rec).status, "the record follows the task")
            // The home list shows it: due within three days.
            val home = wang.homeList(GRID)
            val line = home.firstOrNull { it.task?.id == task } ?: throw TestFailure("on the home list: $home")
            checkEq(cn.xiuhua.ffi.HomeReason.DUE_SOON, line.reason, "due soon")
            checkEq(number, line.task?.number, "the list shows the number")
            // Evening at the station: wang syncs, li's phone gets the grid and finds the task
            // by the number the resident was given.
            val r = wang.sync()
            checkEq(0uL, r.renumbered, "nothing was provisional")
            li.sync()
            val hit = li.findByNumber(number) ?: throw TestFailure("li finds $number")
            checkEq("task" to task, hit.kind to hit.id, "the task")
            checkEq("楼道声控灯坏了", li.task(hit.id).title, "with its title")
            checkEq(rec, li.findByNumber(" $recNumber ")?.id, "and the record by its number")
            check(li.search(number.takeLast(6)).any { it.id == task }) { "the search box finds the number too" }
            checkEq(null, li.findByNumber("罗河-1999-000001"), "an unknown number finds nothing")
        } finally {
            wang.close()
            li.close()
            dir.toFile().deleteRecursively()
        }
    }

    private suspend fun twoGrids(station: StationServer) {
        station.admin("district", "add", "d-1", "东城片区")
        station.admin("community", "add", "c-1", "和平社区", "--district", "d-1")
        station.admin("grid", "add", "g-a", "一网格", "--community", "c-1")
        station.admin("grid", "add", "g-b", "二网格", "--community", "c-1")
        station.admin("user", "add", "u-two", "孙丽")
        station.admin("grant", "u-two", "--grid", "g-a", "--role", "网格员")
        station.admin("grant", "u-two", "--grid", "g-b", "--role", "社区工作者")
        val code = station.admin("enroll-code", "u-two").lines().first().trim()
        station.start()
        val dir = Files.createTempDirectory("xiuhua-two-grids")
        val phone = XiuhuaRepository.open(
            dir.resolve("two.db").toString(), "k-two",
            GridWorkerDayTest.actor("unknown", "未登记", "网格员", "new-phone"),
        )
        try {
            phone.enroll(station.url, code, "孙丽的手机")
            phone.sync()
            checkEq(listOf("g-a", "g-b"), phone.grids().sorted(), "the switcher lists both grids")
            checkEq(
                listOf("g-a" to "网格员", "g-b" to "社区工作者"),
                phone.grants().map { it.grid to it.role }.sortedBy { it.first },
                "the role held on each",
            )
            val a = phone.createTask(NewTask("g-a", "上门办", "代办服务", "一网格的代办", "", null, null, "u-two", null))
            val b = phone.createTask(NewTask("g-b", "上门办", "代办服务", "二网格的代办", "", null, null, null, null))
            checkEq("网格员", phone.task(a).events.first().role, "signed as 网格员 on g-a")
            checkEq("社区工作者", phone.task(b).events.first().role, "signed as 社区工作者 on g-b")
            phone.supervise(b, "请尽快")
            expectThrows<XiuhuaException.Refused>("督单 is not a 网格员's") {
                runBlocking { phone.supervise(a, "请尽快") }
            }
            val r = phone.sync()
            checkEq(3uL, r.pushed, "the server accepts each event as signed")
            checkEq(emptyList<RefusedChange>(), phone.refusedChanges(), "nothing refused")
        } finally {
            phone.close()
            dir.toFile().deleteRecursively()
        }
    }

    private suspend fun day(station: StationServer) {
        station.admin("district", "add", "d-1", "东城片区")
        station.admin("community", "add", "c-1", "和平社区", "--district", "d-1")
        station.admin("grid", "add", GRID, "一网格", "--community", "c-1")
        station.admin("user", "add", "u-wang", "王伟")
        station.admin("user", "add", "u-li", "李四")
        station.admin("grant", "u-wang", "--grid", GRID, "--role", "网格员")
        station.admin("grant", "u-li", "--grid", GRID, "--role", "网格员")
        val codeWang = station.admin("enroll-code", "u-wang").lines().first().trim()
        val codeLi = station.admin("enroll-code", "u-li").lines().first().trim()
        station.start()

        val dir = Files.createTempDirectory("xiuhua-phones")
        // Before enrollment the app knows nobody: a provisional actor, replaced by enrollment.
        val provisional = GridWorkerDayTest.actor("unknown", "未登记", "网格员", "new-phone")
        var wang = XiuhuaRepository.open(dir.resolve("wang.db").toString(), "k-wang", provisional)
        val li = XiuhuaRepository.open(dir.resolve("li.db").toString(), "k-li", provisional)
        try {
            // A second store over the same file is refused (it would overwrite the first's rows).
            expectThrows<XiuhuaException.AlreadyOpen>("the same file opened twice") {
                runBlocking { XiuhuaRepository.open(dir.resolve("wang.db").toString(), "k-wang", provisional) }
            }
            val notEnrolled = expectThrows<XiuhuaException.NotEnrolled>("sync before enrollment") {
                runBlocking { wang.sync() }
            }
            check(notEnrolled.readableMessage.contains("not enrolled")) { notEnrolled.readableMessage }
            checkEq(SyncAction.ENROLL, notEnrolled.syncAction, "not enrolled: show enrollment")
            check(!wang.clockAnchored()) { "no server time before enrollment" }
            expectThrows<XiuhuaException.InvalidInput>("a wrong code") {
                runBlocking { wang.enroll(station.url, "WRONG-CODE", "王伟的手机") }
            }.also {
                checkEq("code", it.field, "the code field is the one to fix")
                check(it.readableMessage.isNotBlank()) { "readable: $it" }
            }

            val enrolled = wang.enroll(station.url, codeWang, "王伟的手机")
            check(wang.clockAnchored()) { "enrollment anchors the clock to the server's time" }
            checkEq("u-wang", enrolled.user, "enrolled user")
            checkEq(listOf(GRID), enrolled.grants.map { it.grid }, "grants")
            checkEq(enrolled.device, wang.store.actor().device, "the store acts as the enrolled device")
            checkEq("王伟", wang.store.actor().name, "and as the enrolled user")
            li.enroll(station.url, codeLi, "李四的手机")
            expectThrows<XiuhuaException>("a used code") {
                runBlocking { li.enroll(station.url, codeLi, "again") }
            }

            // Wang works offline, then syncs at the station.
            val hh = wang.createHousehold(
                GridWorkerDayTest.household("9号楼", "1单元", "101", GridWorkerDayTest.member("周八", phone = "13812345678")),
            )
            wang.createRecord(NewRecord(GRID, "设施报修", "路灯不亮", "周八", hh, "9号楼", "9号楼门口"))
            checkEq(2L, wang.syncStatus().pendingChanges, "two changes wait for the server")
            val phases = mutableListOf<SyncPhase>()
            val pushed = wang.sync { phase, _, _ -> phases += phase }
            // The enrollment brought a block of numbers: the record's number is real already.
            checkEq(0uL, pushed.renumbered, "nothing provisional to replace")
            checkEq(2uL, pushed.pushed, "pushed")
            check(SyncPhase.PUSH in phases && phases.last() == SyncPhase.DONE) { "progress: $phases" }
            val st = wang.syncStatus()
            checkEq(0L, st.pendingChanges, "outbox empty after the ack")
            check(st.lastSuccessMs != null && st.lastError == null && st.enrolled && !st.running) { "status: $st" }

            // Before its first sync, Li's phone learns how big it will be.
            val estimate = li.firstSyncEstimate().single { it.grid == GRID }
            checkEq(2uL, estimate.documents, "the household and the record await li")
            check(estimate.bytes > 500uL) { "an estimate in bytes: $estimate" }
            // Li's fresh phone bootstraps the grid and hears about it; the bar knows its total.
            val totals = mutableListOf<Long?>()
            val heard = kotlinx.coroutines.coroutineScope {
                val first = async(Dispatchers.Unconfined) { withTimeout(30_000) { li.changes().first() } }
                Thread.sleep(500)
                val report = li.sync { phase, _, total -> if (phase == SyncPhase.BOOTSTRAP) totals += total }
                check(totals.isNotEmpty() && totals.all { it == null || it == 2L }) { "bootstrap totals: $totals" }
                check(report.bootstrappedDocs + report.pulled >= 2uL) { "li got the grid: $report" }
                first.await()
            }
            check(heard.everything) { "a sync that brought changes tells the screens to refresh: $heard" }
            checkEq(listOf("周八"), li.searchResidents("zhouba").map { it.name }, "li finds the resident")
            // The assignee picker: the server sent the grid's people (names and roles only).
            checkEq(
                listOf("李四" to "网格员", "王伟" to "网格员"),
                li.gridPeople(GRID).map { it.name to it.role },
                "the grid's people",
            )
            val errand = li.createTask(NewTask(GRID, "上门办", "代办服务", "换灯泡", "", hh, null, "u-wang", null))
            checkEq("王伟", li.taskPage(GRID).items.single { it.id == errand }.assigneeName, "lists show names, not ids")
            li.addVisit(hh, "上门核实路灯")
            li.sync()

            // Wang pulls Li's visit and task; the screens hear which documents changed.
            val (back, pulledEvent) = kotlinx.coroutines.coroutineScope {
                val first = async(Dispatchers.Unconfined) { withTimeout(30_000) { wang.changes().first() } }
                Thread.sleep(200)
                wang.sync() to first.await()
            }
            check(back.pulled >= 1uL) { "wang pulled: $back" }
            check(!pulledEvent.everything) { "a pull lists what it changed: $pulledEvent" }
            checkEq(setOf(hh, errand), pulledEvent.docs.map { it.id }.toSet(), "the household and the task")
            checkEq(listOf("上门核实路灯"), wang.household(hh).visits.map { it.purpose }, "li's visit reached wang")
            checkEq(listOf("u-wang", "u-li"), wang.history(hh).map { it.user }, "history across devices")

            // Reopened with the provisional actor, the store still acts as the enrolled device.
            wang.close()
            wang = XiuhuaRepository.open(dir.resolve("wang.db").toString(), "k-wang", provisional)
            checkEq(enrolled.device, wang.store.actor().device, "an enrolled store keeps its identity")
            checkEq(0L, wang.syncStatus().pendingChanges, "and its state")

            // The station goes away: the sync fails honestly and loses nothing.
            val before = wang.syncStatus().lastSuccessMs
            station.stop()
            wang.addVisit(hh, "回访")
            val down = expectThrows<XiuhuaException.Network>("server down") { runBlocking { wang.sync() } }
            check(down.readableMessage.isNotBlank()) { "readable: $down" }
            checkEq(SyncAction.RETRY_LATER, down.syncAction, "a network error: retry later")
            val failed = wang.syncStatus()
            checkEq(before, failed.lastSuccessMs, "a failed sync is not a success")
            check(failed.lastError != null) { "last error shown: $failed" }
            check(!failed.interrupted) { "it ended, badly: not interrupted" }
            check(failed.lastSync?.finished == false) { "the last sync says it did not finish: $failed" }
            checkEq(1L, failed.pendingChanges, "the visit waits in the outbox")
            checkEq(emptyList<RefusedChange>(), wang.refusedChanges(), "nothing refused")

            // Signing out with unsynced work is refused, says how much, and needs force.
            val unsynced = expectThrows<XiuhuaException.UnsyncedWork>("sign out with unsynced work") {
                runBlocking { wang.signOut() }
            }
            checkEq(1uL, unsynced.changes, "the visit is the unsynced work")
            checkEq(SyncAction.SYNC_FIRST, unsynced.syncAction, "sync first")
            check(unsynced.readableMessage.contains("force")) { unsynced.readableMessage }
            check(wang.syncStatus().enrolled) { "a refused sign-out changes nothing" }
            checkEq(1uL, wang.unsyncedWork().changes, "the unsynced work is listed")

            // Back at the station with a new code for the same user (as after a lost
            // credential): the store and its outbox are kept, and the visit syncs.
            val again = station.admin("enroll-code", "u-wang").lines().first().trim()
            station.start()
            val re = wang.enroll(station.url, again, "王伟的手机")
            check(re.kind is EnrollmentKind.Continued) { "re-enrollment keeps the work: ${re.kind}" }
            checkEq(re.device, wang.store.actor().device, "new writes sign as the new device")
            checkEq(1L, wang.syncStatus().pendingChanges, "the visit still waits")
            checkEq(1uL, wang.sync().pushed, "and reaches the station")
            li.setServerUrl(station.url)
            li.sync()
            check(li.household(hh).visits.any { it.purpose == "回访" }) { "li sees the visit" }

            // Fully synced: signing out erases the phone without force.
            val out = wang.signOut()
            check(out.documents >= 2uL) { "the phone's documents are erased: $out" }
            checkEq(0uL, out.unsyncedChanges, "nothing unsynced was lost")
            check(!wang.syncStatus().enrolled) { "signed out" }
        } finally {
            wang.close()
            li.close()
            dir.toFile().deleteRecursively()
        }
    }
}
