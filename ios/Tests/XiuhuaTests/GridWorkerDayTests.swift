import Foundation
import XCTest
import Xiuhua

/// A grid worker's day through the Swift repository, against the real Rust library (the
/// same ground as the Kotlin GridWorkerDayTest).
final class GridWorkerDayTests: XCTestCase {
    func testOpenEncryptedStoreRegisterHouseholdsFindResidentsByPinyin() async throws {
        let dir = try temporaryFolder("xiuhua-swift")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("wang.db").path
        var repo: XiuhuaRepository? = try await XiuhuaRepository.open(path: path, key: "key-from-keychain", actor: wangActor)
        let hh = try await repo!.createHousehold(household(
            "3号楼", "2单元", "301",
            member("张三", phone: "13800001234", id: "11010519491231002X", tags: ["党员"]),
            member("李梅", relation: "配偶")))
        _ = try await repo!.createHousehold(household("3号楼", "1单元", "101", member("赵六")))
        _ = try await repo!.createHousehold(household("12号楼", "1单元", "502", member("张森淼")))

        let v1 = try await repo!.buildings(grid).map(\.name)
        XCTAssertEqual(v1, ["3号楼", "12号楼"], "buildings in natural order")
        let v2 = try await repo!.units(grid, "3号楼")
        XCTAssertEqual(v2, ["1单元", "2单元"])
        let inUnit = try await repo!.households(grid, "3号楼", unit: "2单元")
        XCTAssertEqual(inUnit.count, 1)
        XCTAssertEqual(inUnit.first?.headName, "张三")
        XCTAssertEqual(inUnit.first?.memberCount, 2)

        let byInitials = try await repo!.searchResidents("zs")
        XCTAssertEqual(byInitials.first?.name, "张三", "zs finds 张三 first")
        XCTAssertEqual(byInitials.first?.idMasked, "110***********002X", "ID masked in search")
        let v3 = try await repo!.searchResidents("zhangsan").map(\.name)
        XCTAssertEqual(v3, ["张三"], "full pinyin")
        let v4 = try await repo!.searchResidents("1234").map(\.name)
        XCTAssertEqual(v4, ["张三"], "phone suffix")
        let v5 = try await repo!.searchResidents("z", limit: 1).count
        XCTAssertEqual(v5, 1, "limit")

        let detail = try await repo!.household(hh)
        XCTAssertEqual(detail.members.first?.idNumber, "11010519491231002X", "detail shows the whole ID number")
        XCTAssertEqual(detail.members.first?.tags, ["党员"])
        XCTAssertEqual(detail.createdBy, "u-wang")
        // Closes the store once the last call's detached task has let go of it (a moment
        // after the call returned; the bindings have no explicit close yet). A second open
        // of a file that is open in this process is AlreadyOpen, so wait for it.
        repo = nil
        try await Task.sleep(nanoseconds: 300_000_000)

        // The file is encrypted: a wrong key is a clear error, the right key opens it.
        let e = try await expectXiuhuaError("wrong key") {
            try await XiuhuaRepository.open(path: path, key: "wrong", actor: wangActor)
        }
        guard case .WrongKey = e else { return XCTFail("expected WrongKey, got \(e)") }
        XCTAssertEqual(e.localizedDescription, "the encryption key does not open this database")
        XCTAssertEqual(e.detail, e.localizedDescription)
        XCTAssertEqual(e.syncAction, .showError)
        let reopened = try await XiuhuaRepository.open(path: path, key: "key-from-keychain", actor: wangActor)
        let v6 = try await reopened.searchResidents("张").map(\.name)
        XCTAssertEqual(v6, ["张三", "张森淼"], "data survives reopening")
    }

    func testVisitAHouseholdLogARecordReadTheHistory() async throws {
        let repo = try await XiuhuaRepository.inMemory(actor: wangActor)
        let hh = try await repo.createHousehold(household("1号楼", "1单元", "101", member("张三", tags: ["独居老人"])))
        let visit = try await repo.addVisit(hh, purpose: "走访独居老人", note: "身体不错", followUp: "下周复查血压")
        let h = try await repo.household(hh)
        XCTAssertEqual(h.visits.map(\.id), [visit])
        XCTAssertEqual(h.visits.first?.byName, "王伟")
        XCTAssertEqual(h.visits.first?.followUp, "下周复查血压")

        try await repo.setHouseholdNote(hh, "上午在家")
        try await repo.setHouseholdTags(hh, ["回迁"])
        let m = try await repo.addMember(hh, member("李梅", relation: "配偶", phone: "13900000001"))
        try await repo.setMemberPhone(hh, member: m, phone: nil)
        let edited = try await repo.household(hh)
        XCTAssertEqual(edited.note, "上午在家")
        XCTAssertEqual(edited.tags, ["回迁"])
        XCTAssertEqual(edited.members.first { $0.id == m }?.phone, nil, "phone cleared")
        try await repo.removeMember(hh, member: m)
        let v7 = try await repo.household(hh).members.map(\.name)
        XCTAssertEqual(v7, ["张三"])

        let rec = try await repo.createRecord(NewRecord(
            grid: grid, category: "环境卫生", description: "楼道堆放杂物，影响通行", reporter: "张三",
            household: hh, building: "1号楼", place: "1号楼1单元楼道"))
        let v8 = try await repo.record(rec).status
        XCTAssertEqual(v8, "待处理", "a new record is pending")
        try await repo.setRecordStatus(rec, "处理中")
        let v9 = try await repo.records(grid, status: "处理中").map(\.id)
        XCTAssertEqual(v9, [rec])
        let v10 = try await repo.records(grid, status: "已办结").count
        XCTAssertEqual(v10, 0)
        let v11 = try await repo.records(grid, category: "环境卫生").count
        XCTAssertEqual(v11, 1)

        let history = try await repo.history(hh)
        XCTAssertEqual(history.first?.what, "register household")
        XCTAssertTrue(history.contains { $0.what == "add visit" }, "audit trail: \(history.map(\.what))")
        XCTAssertTrue(history.allSatisfy { $0.user == "u-wang" && $0.name == "王伟" })
        let timeline = try await repo.householdHistory(hh)
        XCTAssertTrue(timeline.contains { $0.kind == "visit" } && timeline.contains { $0.kind == "record" }, "\(timeline)")
        let ledger = try await repo.ledger(grid)
        XCTAssertEqual(ledger.households, 1)
        XCTAssertEqual(ledger.records.first?.count, 1)
    }

    func testATaskThroughTheFiveOrdersAcrossThreePhones() async throws {
        let w = try await XiuhuaRepository.inMemory(actor: wangActor)
        let z = try await XiuhuaRepository.inMemory(actor: zhaoActor)
        let s = try await XiuhuaRepository.inMemory(actor: sunActor)
        let hh = try await w.createHousehold(household("2号楼", "1单元", "201", member("刘奶奶", tags: ["独居老人"])))
        let deadline = try await w.nowMs() + 3 * 24 * 3600 * 1000
        // 点单 + 派单 in one action.
        let task = try await w.createTask(NewTask(
            grid: grid, level: "上门办", category: "代办服务", title: "代办高龄津贴", description: "老人行动不便",
            household: hh, sourceRecord: nil, assignee: "u-wang", deadline: deadline))
        let v12 = try await w.task(task).status
        XCTAssertEqual(v12, "assigned")
        let v13 = try await w.myTasks("u-wang").map(\.id)
        XCTAssertEqual(v13, [task])
        let v14 = try await w.tasks(grid, level: "上门办").count
        XCTAssertEqual(v14, 1)
        let v15 = try await w.tasks(grid, level: "党群办").count
        XCTAssertEqual(v15, 0)
        let v16 = try await w.overdueTasks(grid).count
        XCTAssertEqual(v16, 0, "the deadline is three days away")
        // 办单
        let v17 = try await w.taskAction(task, .accept).status
        XCTAssertEqual(v17, "in_progress")
        // 督单 by community staff on another phone.
        try await exchange(w, z)
        let v18 = try await z.taskAction(task, .supervise(text: "请本周内办结", newDeadline: nil)).status
        XCTAssertEqual(v18, "in_progress")
        try await exchange(z, w)
        // A grid worker may not supervise: refused, readable, nothing written.
        let refused = try await expectXiuhuaError("grid worker supervising") {
            try await w.taskAction(task, .supervise(text: "催一下", newDeadline: nil))
        }
        guard case .Refused = refused else { return XCTFail("expected Refused, got \(refused)") }
        XCTAssertTrue(refused.localizedDescription.hasPrefix("action refused:"), refused.localizedDescription)
        let v19 = try await w.task(task).events.count
        XCTAssertEqual(v19, 4, "the refused action wrote nothing")
        // 办结
        let done = try await w.taskAction(task, .complete(result: "已提交街道，津贴下月到账"))
        XCTAssertEqual(done.status, "done")
        XCTAssertEqual(done.statusLabel, "已办结")
        // 问单 by the secretary.
        try await exchange(w, s)
        try await s.taskAction(task, .inquire(text: "老人满意吗？", sendBack: false))
        try await exchange(s, w)
        // 评单
        let rated = try await w.taskAction(task, .rate(score: 5, comment: "非常满意"))
        XCTAssertEqual(rated.status, "closed")
        XCTAssertEqual(rated.lastRating?.score, 5)
        XCTAssertEqual(rated.events.map(\.kind), ["order", "assign", "accept", "supervise", "complete", "inquire", "rate"])
        XCTAssertTrue(rated.events.allSatisfy { $0.outcome == .applied })
        let v20 = try await w.myTasks("u-wang").count
        XCTAssertEqual(v20, 0, "a closed task leaves my list")
        let v21 = try await w.ledger(grid).ratedTasks
        XCTAssertEqual(v21, 1)
    }

    func testOrderFromARecordTheRecordFollowsItsTaskToResolvedOnAnotherPhone() async throws {
        let w = try await XiuhuaRepository.inMemory(actor: wangActor)
        let z = try await XiuhuaRepository.inMemory(actor: zhaoActor)
        let hh = try await w.createHousehold(household("5号楼", "1单元", "101", member("周八")))
        let rec = try await w.createRecord(NewRecord(grid: grid, category: "环境卫生", description: "楼道灯坏了", reporter: "周八",
                                                     household: hh, building: "5号楼", place: "5号楼1单元"))
        // Corrections first: the category and place, and the household's room.
        try await w.setRecordCategory(rec, "设施报修")
        try await w.setRecordPlace(rec, "5号楼1单元2层")
        let place = try await w.record(rec).place
        XCTAssertEqual(place, "5号楼1单元2层")
        try await w.moveHousehold(hh, building: "5号楼", unit: "1单元", room: "102")
        let room = try await w.household(hh).address.room
        XCTAssertEqual(room, "102")
        let task = try await w.orderFromRecord(rec, level: "上门办", assignee: "u-wang")
        let category = try await w.task(task).category
        XCTAssertEqual(category, "设施报修", "the task takes the corrected category")
        let t = try await w.task(task)
        XCTAssertEqual(t.status, "assigned", "ordered and assigned in one action")
        XCTAssertEqual(t.sourceRecord, rec)
        XCTAssertEqual(t.title, "楼道灯坏了", "titled by the record's words")
        let r = try await w.record(rec)
        XCTAssertEqual(r.status, "处理中", "the record shows its task in progress")
        XCTAssertEqual(r.ownStatus, "待处理")
        XCTAssertEqual(r.tasks, [task])
        try await w.taskAction(task, .accept)
        try await w.taskAction(task, .complete(result: "换了灯泡"))
        try await w.taskAction(task, .rate(score: 5, comment: "满意"))
        let resolved = try await w.record(rec).status
        XCTAssertEqual(resolved, "已办结")
        try await exchange(w, z)
        let there = try await z.records(grid, status: "已办结").map(\.id)
        XCTAssertEqual(there, [rec], "the same on the other phone")
    }

    func testTwoPhonesEditTheSamePhoneNumberOfflineTheConflictIsListedAndResolved() async throws {
        let a = try await XiuhuaRepository.inMemory(actor: wangActor)
        let b = try await XiuhuaRepository.inMemory(actor: actor("u-li", "李四", "网格员", "phone-li"))
        let hh = try await a.createHousehold(household("5号楼", "1单元", "101", member("王五", phone: "13800000001")))
        try await exchange(a, b)
        let m = try await a.household(hh).members[0].id
        try await a.setMemberPhone(hh, member: m, phone: "13900000002")
        try await b.setMemberPhone(hh, member: m, phone: "13700000003")
        try await exchange(a, b)
        try await exchange(b, a)
        let v22 = try await a.householdsWithConflicts(grid).map(\.id)
        XCTAssertEqual(v22, [hh])
        let conflicts = try await a.conflicts(hh)
        XCTAssertEqual(conflicts.count, 1)
        let conflict = try XCTUnwrap(conflicts.first)
        XCTAssertEqual(conflict.path, "members/\(m)/phone")
        XCTAssertEqual(Set(conflict.values.map(\.value)), ["13900000002", "13700000003"], "both values kept")
        let keep = try XCTUnwrap(conflict.values.firstIndex { $0.value == "13700000003" })
        try await a.resolveConflict(hh, path: conflict.path, choice: UInt32(keep))
        let v23 = try await a.conflicts(hh).count
        XCTAssertEqual(v23, 0)
        let v24 = try await a.household(hh).members.first?.phone
        XCTAssertEqual(v24, "13700000003")
        try await exchange(a, b)
        let v25 = try await b.conflicts(hh).count
        XCTAssertEqual(v25, 0, "the resolution syncs like any change")
    }

    func testTwoPhonesCorrectARecordsPlaceOfflineTheRecordIsListedAndSettled() async throws {
        let a = try await XiuhuaRepository.inMemory(actor: wangActor)
        let b = try await XiuhuaRepository.inMemory(actor: actor("u-li", "李四", "网格员", "phone-li"))
        let rec = try await a.createRecord(NewRecord(grid: grid, category: "环境卫生", description: "垃圾桶满了", reporter: "周八",
                                                     household: nil, building: "5号楼", place: "5号楼门口"))
        try await exchange(a, b)
        try await a.setRecordPlace(rec, "5号楼东侧")
        try await b.setRecordPlace(rec, "5号楼西侧")
        try await exchange(a, b)
        try await exchange(b, a)
        let listed = try await a.recordsWithConflicts(grid).map(\.id)
        XCTAssertEqual(listed, [rec])
        let recConflicts = try await a.conflicts(rec)
        let conflict = try XCTUnwrap(recConflicts.first)
        XCTAssertEqual(conflict.path, "place")
        try await a.setRecordCategory(rec, "安全隐患")
        let still = try await a.recordsWithConflicts(grid).map(\.id)
        XCTAssertEqual(still, [rec], "another field's edit does not settle it")
        let keep = try XCTUnwrap(conflict.values.firstIndex { $0.value == "5号楼西侧" })
        try await a.resolveConflict(rec, path: conflict.path, choice: UInt32(keep))
        let place = try await a.record(rec).place
        XCTAssertEqual(place, "5号楼西侧")
        try await exchange(a, b)
        let left = try await b.recordsWithConflicts(grid).count
        XCTAssertEqual(left, 0, "settled on both phones")
    }

    func testTheChangeStreamHearsLocalWritesAndMerges() async throws {
        let a = try await XiuhuaRepository.inMemory(actor: wangActor)
        let b = try await XiuhuaRepository.inMemory(actor: actor("u-li", "李四", "网格员", "phone-li"))
        let hh = try await a.createHousehold(household("7号楼", "1单元", "101", member("孙七")))
        let other = try await a.createHousehold(household("8号楼", "1单元", "101", member("周八")))
        // The observer is registered when the stream is made, before these writes.
        var events = a.changes(of: hh).makeAsyncIterator()
        _ = try await a.addVisit(other, purpose: "不相关的走访")
        _ = try await a.addVisit(hh, purpose: "入户走访")
        try await exchange(a, b)
        _ = try await b.addVisit(hh, purpose: "电话回访")
        try await exchange(b, a)
        let first = await events.next()
        let second = await events.next()
        XCTAssertEqual([first?.origin, second?.origin], [.local, .remote], "the other household's write is filtered out")
        for e in [first, second] {
            XCTAssertTrue(e?.docs.contains { $0.id == hh && $0.kind == "household" } ?? false, "\(String(describing: e))")
        }
        let v26 = try await a.household(hh).visits.count
        XCTAssertEqual(v26, 2)
    }

    func testAHouseholdsLifeANewbornAnEditAMemberMovedOutOneDeceasedAVisitCorrected() async throws {
        let w = try await XiuhuaRepository.inMemory(actor: wangActor)
        let z = try await XiuhuaRepository.inMemory(actor: zhaoActor)
        let hh = try await w.createHousehold(household("6号楼", "1单元", "101", member("钱一", phone: "13800000011"),
                                                       member("孙二", relation: "配偶")))
        let baby = try await w.addMember(hh, NewMember(name: "钱小宝", gender: "女", birthYear: 2026, phone: nil,
                                                       idNumber: nil, relation: "子女", tags: []))
        let count = try await w.household(hh).members.count
        XCTAssertEqual(count, 3, "the newborn is a member")
        let members = try await w.household(hh).members
        let head = members.first { $0.name == "钱一" }!.id
        let spouse = members.first { $0.name == "孙二" }!.id
        try await w.updateMember(hh, member: head, member("钱一", phone: "13800000011", tags: ["退役军人"]))
        let tags = try await w.household(hh).members.first { $0.id == head }!.tags
        XCTAssertEqual(tags, ["退役军人"], "member edited")
        try await w.setMemberStatus(hh, member: spouse, status: "迁出")
        try await w.setMemberStatus(hh, member: head, status: "去世")
        let statuses = try await w.household(hh).members.map(\.status)
        XCTAssertEqual(statuses, ["去世", "迁出", "在册"], "nobody deleted, each with a status")
        let counted = try await w.households(grid, "6号楼", unit: nil).first?.memberCount
        XCTAssertEqual(counted, 1, "only who lives there is counted")
        let found = try await w.searchResidents("孙二").first?.status
        XCTAssertEqual(found, "迁出", "search says so")
        let unknown = try await expectXiuhuaError("unknown status") { try await w.setMemberStatus(hh, member: spouse, status: "失踪") }
        guard case .InvalidInput = unknown else { return XCTFail("expected InvalidInput, got \(unknown)") }

        let v = try await w.addVisit(hh, purpose: "入户走访", note: "孩子出生")
        try await w.updateVisit(hh, visit: v, purpose: "入户走访", note: "孩子出生，已登记", followUp: "满月回访")
        let followUp = try await w.household(hh).visits.first?.followUp
        XCTAssertEqual(followUp, "满月回访", "visit corrected by its author")
        try await exchange(w, z)
        let refused = try await expectXiuhuaError("another user's visit") {
            try await z.updateVisit(hh, visit: v, purpose: "改", note: "别人的")
        }
        guard case .Refused = refused else { return XCTFail("expected Refused, got \(refused)") }
        let note = try await z.household(hh).visits.first?.note
        XCTAssertEqual(note, "孩子出生，已登记", "nothing written")

        // The same tag added on both phones offline is there once.
        try await w.setHouseholdTags(hh, ["低保"])
        try await z.setHouseholdTags(hh, ["低保"])
        try await exchange(w, z)
        try await exchange(z, w)
        let wTags = try await w.household(hh).tags
        let zTags = try await z.household(hh).tags
        XCTAssertEqual(wTags, ["低保"], "a tag set merges without duplicates")
        XCTAssertEqual(zTags, wTags)

        try await w.setHouseholdMovedOut(hh, true)
        let listed = try await w.households(grid, "6号楼", unit: nil)
        XCTAssertTrue(listed.isEmpty, "a household that moved out leaves the building list")
        let movedOut = try await w.household(hh).movedOutAt
        XCTAssertNotNil(movedOut, "and stays on record")
        try await w.removeMember(hh, member: baby)
        let left = try await w.household(hh).members.count
        XCTAssertEqual(left, 2, "a member entered by mistake is removed")
    }

    func testBadInputIsAReadableSwiftErrorAndNothingIsWritten() async throws {
        let repo = try await XiuhuaRepository.inMemory(actor: wangActor)
        let hh = try await repo.createHousehold(household("1号楼", "1单元", "101", member("张三")))
        let bad = try await expectXiuhuaError("bad phone") { try await repo.addMember(hh, member("李四", phone: "12345")) }
        guard case .InvalidInput(let detail, let field, let reason) = bad else { return XCTFail("expected InvalidInput, got \(bad)") }
        XCTAssertEqual(field, "phone", "the field to highlight")
        XCTAssertTrue(detail.hasPrefix("invalid phone:"), detail)
        XCTAssertFalse(reason.isEmpty)
        XCTAssertEqual(bad.localizedDescription, detail, "localizedDescription is the core's text")
        XCTAssertEqual(bad.detail, detail)
        XCTAssertEqual("\(bad)", detail, "description is the core's text")
        XCTAssertEqual(bad.syncAction, .fixInput)

        let badId = try await expectXiuhuaError("bad ID number") { try await repo.addMember(hh, member("李四", id: "110105194912310021")) }
        guard case .InvalidInput(_, "id_number", _) = badId else { return XCTFail("expected the id_number field, got \(badId)") }
        let badEnum = try await expectXiuhuaError("bad category") {
            try await repo.createRecord(NewRecord(grid: grid, category: "其他", description: "x", reporter: "张三",
                                                  household: nil, building: nil, place: ""))
        }
        XCTAssertTrue(badEnum.localizedDescription.contains("矛盾纠纷"), "lists the allowed values: \(badEnum.localizedDescription)")
        let missing = try await expectXiuhuaError("unknown household") { try await repo.household("hh-nope") }
        guard case .NotFound = missing else { return XCTFail("expected NotFound, got \(missing)") }
        let score = try await expectXiuhuaError("score 9") { try await repo.taskAction("task-x", .rate(score: 9, comment: "")) }
        guard case .InvalidInput = score else { return XCTFail("expected InvalidInput, got \(score)") }
        let v27 = try await repo.household(hh).members.count
        XCTAssertEqual(v27, 1, "nothing written")
        XCTAssertTrue(XiuhuaRepository.vocabulary.tags.contains { $0.value == "低保" }, "vocabulary")
    }
}
