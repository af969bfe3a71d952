package cn.xiuhua

import cn.xiuhua.ffi.Actor
import cn.xiuhua.ffi.Address
import cn.xiuhua.ffi.ChangeEvent
import cn.xiuhua.ffi.ChangeOrigin
import cn.xiuhua.ffi.EventOutcome
import cn.xiuhua.ffi.NewHousehold
import cn.xiuhua.ffi.NewMember
import cn.xiuhua.ffi.NewRecord
import cn.xiuhua.ffi.NewTask
import cn.xiuhua.ffi.XiuhuaException
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.flow.take
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import java.nio.file.Files

/** A grid worker's day, through the Kotlin API, against the real Rust library. */
object GridWorkerDayTest {
    const val GRID = "grid-1"

    fun actor(user: String, name: String, role: String, device: String) = Actor(user, name, role, device)
    val wang = actor("u-wang", "王伟", "网格员", "phone-wang")
    val zhao = actor("u-zhao", "赵敏", "社区工作者", "phone-zhao")
    val sun = actor("u-sun", "孙书记", "社区书记", "phone-sun")

    fun member(name: String, relation: String = "户主", phone: String? = null, id: String? = null, tags: List<String> = emptyList()) =
        NewMember(name, "男", 1958, phone, id, relation, tags)

    fun household(building: String, unit: String, room: String, vararg members: NewMember) = NewHousehold(
        Address(GRID, building, unit, room), members.toList(), emptyList(), "",
    )

    /** Brings every change of [from] into [to] (what a sync does, without a server). */
    suspend fun exchange(from: XiuhuaRepository, to: XiuhuaRepository) {
        to.applyChanges(from.exportAllChanges())
    }

    fun register(suite: Suite) {
        suite.test("morning: open an encrypted store, register households, find residents by pinyin") {
            runBlocking {
                val dir = Files.createTempDirectory("xiuhua-kt")
                val path = dir.resolve("wang.db").toString()
                XiuhuaRepository.open(path, "key-from-keystore", wang).use { repo ->
                    val hh = repo.createHousehold(
                        household(
                            "3号楼", "2单元", "301",
                            member("张三", phone = "13800001234", id = "11010519491231002X", tags = listOf("党员")),
                            member("李梅", relation = "配偶"),
                        ),
                    )
                    repo.createHousehold(household("3号楼", "1单元", "101", member("赵六")))
                    repo.createHousehold(household("12号楼", "1单元", "502", member("张森淼")))

                    checkEq(listOf("3号楼", "12号楼"), repo.buildings(GRID).map { it.name }, "buildings in natural order")
                    checkEq(listOf("1单元", "2单元"), repo.units(GRID, "3号楼"), "units")
                    val inUnit = repo.householdsIn(GRID, "3号楼", "2单元")
                    checkEq(1, inUnit.size, "households in 3号楼 2单元")
                    checkEq("张三", inUnit[0].headName, "head of household")
                    checkEq(2L, inUnit[0].memberCount, "member count")

                    val byInitials = repo.searchResidents("zs")
                    check(byInitials.isNotEmpty() && byInitials[0].name == "张三") { "zs finds 张三 first: $byInitials" }
                    checkEq("110***********002X".length, byInitials[0].idMasked?.length, "ID masked in search")
                    check(byInitials[0].idMasked?.contains("*") == true) { "masked: ${byInitials[0].idMasked}" }
                    checkEq(listOf("张三"), repo.searchResidents("zhangsan").map { it.name }, "full pinyin")
                    checkEq(listOf("张三"), repo.searchResidents("1234").map { it.name }, "phone suffix")

                    val detail = repo.household(hh)
                    checkEq("11010519491231002X", detail.members[0].idNumber, "detail shows the whole ID number")
                    checkEq(listOf("党员"), detail.members[0].tags, "member tags")
                }
                // The file is encrypted: a wrong key is a clear error, the right key opens it.
                val e = expectThrows<XiuhuaException.WrongKey>("wrong key") {
                    runBlocking { XiuhuaRepository.open(path, "wrong", wang) }
                }
                checkEq("the encryption key does not open this database", e.readableMessage, "wrong key text")
                check(e.message?.contains("the encryption key does not open this database") == true) {
                    "Kotlin's exception message carries the readable text: ${e.message}"
                }
                XiuhuaRepository.open(path, "key-from-keystore", wang).use { repo ->
                    checkEq(listOf("张三", "张森淼"), repo.searchResidents("张").map { it.name }, "data survives reopening")
                }
            }
        }

        suite.test("visit a household, log a 民情 record offline, read the history") {
            runBlocking {
                XiuhuaRepository.inMemory(wang).use { repo ->
                    val hh = repo.createHousehold(household("1号楼", "1单元", "101", member("张三", tags = listOf("独居老人"))))
                    val visit = repo.addVisit(hh, "走访独居老人", "身体不错", followUp = "下周复查血压")
                    val h = repo.household(hh)
                    checkEq(visit, h.visits.single().id, "visit logged")
                    checkEq("王伟", h.visits.single().byName, "visitor")
                    checkEq("下周复查血压", h.visits.single().followUp, "follow-up")

                    val rec = repo.createRecord(
                        NewRecord(GRID, "环境卫生", "楼道堆放杂物，影响通行", "张三", hh, "1号楼", "1号楼1单元楼道"),
                    )
                    checkEq("待处理", repo.record(rec).status, "new record is pending")
                    repo.setRecordStatus(rec, "处理中")
                    checkEq(listOf(rec), repo.records(GRID, status = "处理中").map { it.id }, "records by status")
                    checkEq(1, repo.records(GRID, category = "环境卫生").size, "records by category")

                    val history = repo.history(hh)
                    checkEq(listOf("register household", "add visit"), history.map { it.what }, "audit trail")
                    check(history.all { it.user == "u-wang" && it.name == "王伟" }) { "who: $history" }
                    val timeline = repo.householdHistory(hh)
                    check(timeline.any { it.kind == "visit" } && timeline.any { it.kind == "record" }) { "timeline: $timeline" }
                    val ledger = repo.ledger(GRID)
                    checkEq(1L, ledger.households, "ledger households")
                    checkEq(1L, ledger.records.single().count, "ledger records")
                }
            }
        }

        suite.test("a 代办 task through the five orders, across three phones") {
            runBlocking {
                val w = XiuhuaRepository.inMemory(wang)
                val z = XiuhuaRepository.inMemory(zhao)
                val s = XiuhuaRepository.inMemory(sun)
                val hh = w.createHousehold(household("2号楼", "1单元", "201", member("刘奶奶", tags = listOf("独居老人"))))
                val deadline = w.nowMs() + 3 * 24 * 3600 * 1000L
                // 点单 + 派单 in one action.
                val task = w.createTask(
                    NewTask(GRID, "上门办", "代办服务", "代办高龄津贴", "老人行动不便", hh, null, "u-wang", deadline),
                )
                checkEq("assigned", w.task(task).status, "ordered and assigned")
                checkEq(listOf(task), w.myTasks("u-wang").map { it.id }, "my tasks")
                checkEq(1, w.tasks(GRID, level = "上门办").size, "tasks by level")
                checkEq(0, w.tasks(GRID, level = "党群办").size, "other level empty")
                // 办单
                checkEq("in_progress", w.accept(task).status, "accepted")
                // 督单 by community staff on another phone.
                exchange(w, z)
                val supervised = z.supervise(task, "请本周内办结")
                checkEq("in_progress", supervised.status, "supervision keeps it in progress")
                exchange(z, w)
                // A grid worker may not supervise: refused, readable, nothing written.
                val refused = expectThrows<XiuhuaException.Refused>("grid worker supervising") {
                    runBlocking { w.supervise(task, "催一下") }
                }
                check(refused.readableMessage.startsWith("action refused:")) { refused.readableMessage }
                check(refused.message!!.contains("action refused:")) { "message: ${refused.message}" }
                // 办结
                val done = w.complete(task, "已提交街道，津贴下月到账")
                checkEq("done", done.status, "done")
                checkEq("已办结", done.statusLabel, "Chinese label")
                // 问单 by the secretary.
                exchange(w, s)
                s.inquire(task, "老人满意吗？")
                exchange(s, w)
                // 评单
                val rated = w.rate(task, 5, "非常满意")
                checkEq("closed", rated.status, "closed after a good rating")
                checkEq(5, rated.lastRating?.score, "rating")
                checkEq(
                    listOf("order", "assign", "accept", "supervise", "complete", "inquire", "rate"),
                    rated.events.map { it.kind },
                    "event log",
                )
                check(rated.events.all { it.outcome == EventOutcome.Applied }) { "all applied" }
                check(w.myTasks("u-wang").isEmpty()) { "closed task leaves my list" }
                checkEq(1L, w.ledger(GRID).ratedTasks, "ledger counts the rating")
                listOf(w, z, s).forEach { it.close() }
            }
        }

        suite.test("点单 from a 民情 record: the record follows its task to 已办结 on another phone") {
            runBlocking {
                val w = XiuhuaRepository.inMemory(wang)
                val z = XiuhuaRepository.inMemory(zhao)
                val hh = w.createHousehold(household("5号楼", "1单元", "101", member("周八")))
                val rec = w.createRecord(NewRecord(GRID, "环境卫生", "楼道灯坏了", "周八", hh, "5号楼", "5号楼1单元"))
                // Corrections first: the category and place, and the household's room.
                w.setRecordCategory(rec, "设施报修")
                w.setRecordPlace(rec, "5号楼1单元2层")
                checkEq("5号楼1单元2层", w.record(rec).place, "place corrected")
                w.moveHousehold(hh, "5号楼", "1单元", "102")
                checkEq("102", w.household(hh).address.room, "room corrected")
                val task = w.orderFromRecord(rec, "上门办", assignee = "u-wang")
                checkEq("设施报修", w.task(task).category, "the task takes the corrected category")
                val t = w.task(task)
                checkEq("assigned", t.status, "ordered and assigned in one action")
                checkEq(rec, t.sourceRecord, "linked to the record")
                checkEq("楼道灯坏了", t.title, "titled by the record's words")
                val r = w.record(rec)
                checkEq("处理中", r.status, "the record shows its task in progress")
                checkEq("待处理", r.ownStatus, "its own status untouched")
                checkEq(listOf(task), r.tasks, "the record lists its task")
                w.accept(task)
                w.complete(task, "换了灯泡")
                w.rate(task, 5, "满意")
                checkEq("已办结", w.record(rec).status, "closed task: record resolved")
                exchange(w, z)
                checkEq(listOf(rec), z.records(GRID, status = "已办结").map { it.id }, "the same on the other phone")
                w.close()
                z.close()
            }
        }

        suite.test("two phones edit the same phone number offline: the conflict is listed and resolved") {
            runBlocking {
                val a = XiuhuaRepository.inMemory(wang)
                val b = XiuhuaRepository.inMemory(actor("u-li", "李四", "网格员", "phone-li"))
                val hh = a.createHousehold(household("5号楼", "1单元", "101", member("王五", phone = "13800000001")))
                exchange(a, b)
                val m = a.household(hh).members.single().id
                a.setMemberPhone(hh, m, "13900000002")
                b.setMemberPhone(hh, m, "13700000003")
                exchange(a, b)
                exchange(b, a)
                val listed = a.householdsWithConflicts(GRID)
                checkEq(listOf(hh), listed.map { it.id }, "households with conflicts")
                val conflict = a.conflicts(hh).single()
                checkEq("members/$m/phone", conflict.path, "conflict path")
                checkEq(setOf("13900000002", "13700000003"), conflict.values.map { it.value }.toSet(), "both values kept")
                val keep = conflict.values.indexOfFirst { it.value == "13700000003" }
                a.resolveConflict(hh, conflict.path, keep)
                check(a.conflicts(hh).isEmpty()) { "resolved" }
                checkEq("13700000003", a.household(hh).members.single().phone, "chosen value")
                exchange(a, b)
                check(b.conflicts(hh).isEmpty()) { "the resolution syncs like any change" }
                a.close(); b.close()
            }
        }

        suite.test("two phones correct a record's place offline: the record is listed with its conflict and settled") {
            runBlocking {
                val a = XiuhuaRepository.inMemory(wang)
                val b = XiuhuaRepository.inMemory(actor("u-li", "李四", "网格员", "phone-li"))
                val rec = a.createRecord(NewRecord(GRID, "环境卫生", "垃圾桶满了", "周八", null, "5号楼", "5号楼门口"))
                exchange(a, b)
                a.setRecordPlace(rec, "5号楼东侧")
                b.setRecordPlace(rec, "5号楼西侧")
                exchange(a, b)
                exchange(b, a)
                checkEq(listOf(rec), a.recordsWithConflicts(GRID).map { it.id }, "records with conflicts")
                val conflict = a.conflicts(rec).single()
                checkEq("place", conflict.path, "conflict path")
                // Editing another field does not settle it behind the user's back.
                a.setRecordCategory(rec, "安全隐患")
                checkEq(listOf(rec), a.recordsWithConflicts(GRID).map { it.id }, "still listed after another edit")
                a.resolveConflict(rec, conflict.path, conflict.values.indexOfFirst { it.value == "5号楼西侧" })
                checkEq("5号楼西侧", a.record(rec).place, "chosen value")
                exchange(a, b)
                check(b.recordsWithConflicts(GRID).isEmpty()) { "settled on both phones" }
                a.close(); b.close()
            }
        }

        suite.test("a screen's Flow hears local writes and merges") {
            runBlocking {
                val a = XiuhuaRepository.inMemory(wang)
                val b = XiuhuaRepository.inMemory(actor("u-li", "李四", "网格员", "phone-li"))
                val hh = a.createHousehold(household("7号楼", "1单元", "101", member("孙七")))
                val events = async(Dispatchers.Unconfined) { withTimeout(10_000) { a.changesOf(hh).take(2).toList() } }
                // Unconfined starts collecting (and registers the observer) at once; the pause is a margin.
                Thread.sleep(500)
                a.addVisit(hh, "入户走访")
                exchange(a, b)
                b.addVisit(hh, "电话回访")
                exchange(b, a)
                val got: List<ChangeEvent> = events.await()
                checkEq(listOf(ChangeOrigin.LOCAL, ChangeOrigin.REMOTE), got.map { it.origin }, "origins")
                check(got.all { e -> e.docs.any { it.id == hh && it.kind == "household" } }) { "docs: $got" }
                // A live query re-runs on change.
                val visits = a.liveHousehold(hh).first().visits.size
                checkEq(2, visits, "live household")
                a.close(); b.close()
            }
        }

        suite.test("a household's life: a newborn, an edit, a member moved out and one deceased, a visit corrected") {
            runBlocking {
                val w = XiuhuaRepository.inMemory(wang)
                val z = XiuhuaRepository.inMemory(zhao)
                val hh = w.createHousehold(
                    household("6号楼", "1单元", "101", member("钱一", phone = "13800000011"), member("孙二", relation = "配偶")),
                )
                val baby = w.addMember(hh, NewMember("钱小宝", "女", 2026, null, null, "子女", emptyList()))
                checkEq(3, w.household(hh).members.size, "the newborn is a member")
                val head = w.household(hh).members.first { it.name == "钱一" }.id
                w.updateMember(hh, head, member("钱一", phone = "13800000011", tags = listOf("退役军人")))
                checkEq(listOf("退役军人"), w.household(hh).members.first { it.id == head }.tags, "member edited")
                val spouse = w.household(hh).members.first { it.name == "孙二" }.id
                w.setMemberStatus(hh, spouse, "迁出")
                w.setMemberStatus(hh, head, "去世")
                val h = w.household(hh)
                checkEq(listOf("去世", "迁出", "在册"), h.members.map { it.status }, "nobody deleted, each with a status")
                checkEq(1L, w.householdsIn(GRID, "6号楼").single().memberCount, "only who lives there is counted")
                checkEq("迁出", w.searchResidents("孙二").single().status, "search says so")
                expectThrows<XiuhuaException.InvalidInput>("unknown status") {
                    runBlocking { w.setMemberStatus(hh, spouse, "失踪") }
                }

                val v = w.addVisit(hh, "入户走访", "孩子出生")
                w.updateVisit(hh, v, "入户走访", "孩子出生，已登记", "满月回访")
                checkEq("满月回访", w.household(hh).visits.single().followUp, "visit corrected by its author")
                exchange(w, z)
                expectThrows<XiuhuaException.Refused>("another user's visit") {
                    runBlocking { z.updateVisit(hh, v, "改", "别人的") }
                }
                checkEq("孩子出生，已登记", z.household(hh).visits.single().note, "nothing written")

                // The same tag added on both phones offline is there once.
                w.setHouseholdTags(hh, listOf("低保"))
                z.setHouseholdTags(hh, listOf("低保"))
                exchange(w, z)
                exchange(z, w)
                checkEq(listOf("低保"), w.household(hh).tags, "a tag set merges without duplicates")
                checkEq(w.household(hh).tags, z.household(hh).tags, "the same on both phones")

                w.setHouseholdMovedOut(hh, true)
                check(w.householdsIn(GRID, "6号楼").isEmpty()) { "a household that moved out leaves the building list" }
                check(w.household(hh).movedOutAt != null) { "and stays on record" }
                w.removeMember(hh, baby)
                checkEq(2, w.household(hh).members.size, "a member entered by mistake is removed")
                w.close()
                z.close()
            }
        }

        suite.test("bad input is a readable Kotlin exception, and nothing is written") {
            runBlocking {
                XiuhuaRepository.inMemory(wang).use { repo ->
                    val hh = repo.createHousehold(household("1号楼", "1单元", "101", member("张三")))
                    val bad = expectThrows<XiuhuaException.InvalidInput>("bad phone") {
                        runBlocking { repo.addMember(hh, member("李四", phone = "12345")) }
                    }
                    checkEq("phone", bad.field, "field to highlight")
                    check(bad.readableMessage.startsWith("invalid phone:")) { bad.readableMessage }
                    check(bad.message!!.contains(bad.readableMessage)) { "e.message: ${bad.message}" }
                    checkEq(bad.readableMessage, bad.toString(), "toString is the core's text")
                    val badId = expectThrows<XiuhuaException.InvalidInput>("bad ID number") {
                        runBlocking { repo.addMember(hh, member("李四", id = "110105194912310021")) }
                    }
                    checkEq("id_number", badId.field, "ID number field")
                    val badEnum = expectThrows<XiuhuaException.InvalidInput>("bad category") {
                        runBlocking { repo.createRecord(NewRecord(GRID, "其他", "x", "张三", null, null, "")) }
                    }
                    check(badEnum.readableMessage.contains("矛盾纠纷")) { "lists the allowed values: ${badEnum.readableMessage}" }
                    expectThrows<XiuhuaException.NotFound>("unknown household") { runBlocking { repo.household("hh-nope") } }
                    expectThrows<XiuhuaException.InvalidInput>("score 9") {
                        runBlocking { repo.rate("task-x", 9) }
                    }
                    checkEq(1, repo.household(hh).members.size, "nothing written")
                    check(XiuhuaRepository.vocabulary.tags.any { it.value == "低保" }) { "vocabulary" }
                }
            }
        }
    }
}
