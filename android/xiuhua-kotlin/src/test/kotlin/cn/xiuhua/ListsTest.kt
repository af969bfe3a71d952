package cn.xiuhua

import cn.xiuhua.ffi.HomeReason
import cn.xiuhua.ffi.NewRecord
import cn.xiuhua.ffi.NewTask
import cn.xiuhua.ffi.RecordFilter
import cn.xiuhua.ffi.SearchKind
import cn.xiuhua.ffi.TaskFilter
import cn.xiuhua.ffi.XiuhuaException
import kotlinx.coroutines.runBlocking

/** The home list, the paged lists with filters, search and coverage through the Kotlin API. */
object ListsTest {
    const val GRID = GridWorkerDayTest.GRID
    private const val DAY = 24 * 3600 * 1000L

    fun register(suite: Suite) {
        suite.test("home list: overdue, due soon, reminded, reopened, then households not visited") {
            runBlocking {
                val w = XiuhuaRepository.inMemory(GridWorkerDayTest.wang)
                val z = XiuhuaRepository.inMemory(GridWorkerDayTest.zhao)
                val now = w.nowMs()
                val hh = w.createHousehold(GridWorkerDayTest.household("2号楼", "1单元", "201", GridWorkerDayTest.member("刘奶奶")))
                val visited = w.createHousehold(GridWorkerDayTest.household("2号楼", "1单元", "202", GridWorkerDayTest.member("陈爷爷")))
                w.addVisit(visited, "走访")
                fun task(title: String, deadline: Long?) =
                    NewTask(GRID, "上门办", "代办服务", title, "", hh, null, "u-wang", deadline)
                // A deadline is never before the task's creation: this one passes while the
                // test waits below (the store's clock is the real one).
                val over = w.createTask(task("逾期", w.nowMs() + 1_500L))
                val soon = w.createTask(task("快到期", now + 2 * DAY))
                val reminded = w.createTask(task("被督办", null))
                val reopened = w.createTask(task("差评", null))
                w.accept(reopened)
                w.complete(reopened, "已办")
                w.rate(reopened, 1, "没办好")
                GridWorkerDayTest.exchange(w, z)
                z.supervise(reminded, "请尽快")
                GridWorkerDayTest.exchange(z, w)
                Thread.sleep(2_000)

                val home = w.homeList(GRID)
                checkEq(
                    listOf(HomeReason.OVERDUE, HomeReason.DUE_SOON, HomeReason.REMINDED, HomeReason.REOPENED, HomeReason.NOT_VISITED),
                    home.map { it.reason },
                    "priority order",
                )
                checkEq(listOf(over, soon, reminded, reopened), home.take(4).map { it.task?.id }, "the tasks")
                checkEq(hh, home.last().household?.id, "the unvisited household")
                checkEq("2号楼", home.first().task?.address?.building, "the task's address")
                checkEq("刘奶奶", home.first().task?.address?.headName, "and its head")

                val cov = w.visitCoverage(GRID)
                checkEq(2L to 1L, cov.registered to cov.visited, "coverage counts")
                checkEq(0.5, cov.ratio, "coverage ratio")
                checkEq(listOf(hh), w.notVisited(GRID).map { it.id }, "not visited")
                listOf(w, z).forEach { it.close() }
            }
        }

        suite.test("records and tasks pages: filters, keyset paging, bad input is an error") {
            runBlocking {
                val w = XiuhuaRepository.inMemory(GridWorkerDayTest.wang)
                val alone = w.createHousehold(
                    GridWorkerDayTest.household("3号楼", "1单元", "101", GridWorkerDayTest.member("曾秀英", tags = listOf("独居老人"))),
                )
                val other = w.createHousehold(GridWorkerDayTest.household("5号楼", "1单元", "101", GridWorkerDayTest.member("王五")))
                val ids = (0 until 5).map { i ->
                    val hh = if (i % 2 == 0) alone else other
                    w.createRecord(NewRecord(GRID, "设施报修", "第${i}件 路灯不亮", "居民", hh, null, "门口"))
                }
                val seen = mutableListOf<String>()
                var after: String? = null
                do {
                    val page = w.recordPage(GRID, after = after, limit = 2)
                    seen += page.items.map { it.id }
                    after = page.next
                } while (after != null)
                checkEq(ids.reversed(), seen, "newest first, every record once")
                checkEq(
                    setOf(ids[0], ids[2], ids[4]),
                    w.recordPage(GRID, RecordFilter(tag = "独居老人")).items.map { it.id }.toSet(),
                    "by a member's tag",
                )
                checkEq(
                    setOf(ids[1], ids[3]),
                    w.recordPage(GRID, RecordFilter(building = "5号楼")).items.map { it.id }.toSet(),
                    "by the household's building",
                )
                checkEq("曾秀英", w.recordPage(GRID, limit = 1).items.single().address?.headName, "the address")
                expectThrows<XiuhuaException.InvalidInput>("an unknown tag") {
                    runBlocking { w.recordPage(GRID, RecordFilter(tag = "不存在")) }
                }
                expectThrows<XiuhuaException.InvalidInput>("a made-up cursor") {
                    runBlocking { w.recordPage(GRID, after = "nonsense") }
                }

                val t1 = w.createTask(NewTask(GRID, "党群办", "代办服务", "开证明", "", null, null, "u-wang", w.nowMs() + DAY))
                val t2 = w.createTask(NewTask(GRID, "上门办", "代办服务", "送药", "", alone, null, "u-wang", null))
                checkEq(listOf(t1, t2), w.taskPage(GRID).items.map { it.id }, "soonest deadline first")
                checkEq(listOf(t2), w.taskPage(GRID, TaskFilter(level = "上门办")).items.map { it.id }, "by level")
                checkEq(listOf(t2), w.taskPage(GRID, TaskFilter(building = "3号楼")).items.map { it.id }, "by building")
                checkEq("已派单", w.taskPage(GRID).items.first().statusLabel, "status label")
                w.close()
            }
        }

        suite.test("search: pinyin initials, an address, a record's word, two characters; no ID or phone") {
            runBlocking {
                val w = XiuhuaRepository.inMemory(GridWorkerDayTest.wang)
                val hh = w.createHousehold(
                    GridWorkerDayTest.household(
                        "3号楼", "2单元", "301",
                        GridWorkerDayTest.member("张三", phone = "13800001234", id = "11010519491231002X"),
                    ),
                )
                val rec = w.createRecord(NewRecord(GRID, "环境卫生", "楼道堆满杂物，影响通行", "张三", hh, null, "楼道"))
                val byInitials = w.search("zs")
                checkEq(SearchKind.RESIDENT, byInitials.first().kind, "a resident")
                checkEq("张三", byInitials.first().title, "by name")
                check(!byInitials.toString().contains("13800001234") && !byInitials.toString().contains("11010519491231002X")) {
                    "no phone or ID number in hits: $byInitials"
                }
                val byAddress = w.search("3号楼301")
                checkEq(SearchKind.HOUSEHOLD to hh, byAddress.first().kind to byAddress.first().id, "by address")
                val byWord = w.search("影响通行")
                checkEq(SearchKind.RECORD to rec, byWord.single().kind to byWord.single().id, "by a word of the record")
                checkEq("text", byWord.single().matched, "what matched")
                val short = w.search("杂物")
                check(short.any { it.kind == SearchKind.RECORD && it.id == rec }) { "two characters: $short" }
                w.close()
            }
        }
    }
}
