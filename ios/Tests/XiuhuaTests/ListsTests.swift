import Foundation
import XCTest
import Xiuhua

/// A phone's clock the test moves (the store reads it through `setTimeSource`).
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var ms: Int64
    init(_ ms: Int64) { self.ms = ms }
    func now() -> Int64 { lock.lock(); defer { lock.unlock() }; return ms }
    func advance(_ by: Int64) { lock.lock(); ms += by; lock.unlock() }
}

/// The lists a grid worker's screens show, through the Swift repository.
final class ListsTests: XCTestCase {
    let day: Int64 = 24 * 3600 * 1000

    func testTheHomeListCoverageAndNotVisitedInPriorityOrder() async throws {
        let clock = TestClock(try await XiuhuaRepository.inMemory(actor: wangActor).nowMs())
        let w = try await XiuhuaRepository.inMemory(actor: wangActor)
        let z = try await XiuhuaRepository.inMemory(actor: zhaoActor)
        try await w.setTimeSource { clock.now() }
        try await z.setTimeSource { clock.now() }
        let hh = try await w.createHousehold(household("2号楼", "1单元", "201", member("刘奶奶")))
        let visited = try await w.createHousehold(household("2号楼", "1单元", "202", member("陈爷爷")))
        _ = try await w.addVisit(visited, purpose: "走访")
        func task(_ title: String, _ deadline: Int64?) -> NewTask {
            NewTask(grid: grid, level: "上门办", category: "代办服务", title: title, description: "",
                    household: hh, sourceRecord: nil, assignee: "u-wang", deadline: deadline)
        }
        let over = try await w.createTask(task("逾期", clock.now() + 3600_000))
        let soon = try await w.createTask(task("快到期", clock.now() + 3 * day))
        let reminded = try await w.createTask(task("被督办", nil))
        let reopened = try await w.createTask(task("差评", nil))
        try await w.taskAction(reopened, .accept)
        try await w.taskAction(reopened, .complete(result: "已办"))
        try await w.taskAction(reopened, .rate(score: 1, comment: "没办好"))
        try await exchange(w, z)
        try await z.taskAction(reminded, .supervise(text: "请尽快", newDeadline: nil))
        try await exchange(z, w)
        // A day later: the first is overdue, the second due within three days.
        clock.advance(day)

        let home = try await w.homeList(grid)
        XCTAssertEqual(home.map(\.reason), [.overdue, .dueSoon, .reminded, .reopened, .notVisited], "priority order")
        XCTAssertEqual(home.prefix(4).map { $0.task?.id }, [over, soon, reminded, reopened])
        XCTAssertEqual(home.last?.household?.id, hh, "the unvisited household")

        let cov = try await w.visitCoverage(grid)
        XCTAssertEqual(cov.registered, 2)
        XCTAssertEqual(cov.visited, 1)
        XCTAssertEqual(cov.ratio, 0.5)
        let notVisited = try await w.notVisited(grid).map(\.id)
        XCTAssertEqual(notVisited, [hh])
    }

    func testPagesEveryRecordOnceAndSearchByPinyinAddressAndWords() async throws {
        let w = try await XiuhuaRepository.inMemory(actor: wangActor)
        let alone = try await w.createHousehold(household("3号楼", "1单元", "101",
                                                          member("曾秀英", phone: "13800001234", tags: ["独居老人"])))
        let other = try await w.createHousehold(household("5号楼", "1单元", "101", member("王五")))
        var ids: [String] = []
        for i in 0..<5 {
            ids.append(try await w.createRecord(NewRecord(grid: grid, category: "设施报修", description: "第\(i)件 路灯不亮",
                                                          reporter: "居民", household: i % 2 == 0 ? alone : other,
                                                          building: nil, place: "门口")))
        }
        var seen: [String] = []
        var after: String? = nil
        repeat {
            let page = try await w.recordPage(grid, after: after, limit: 2)
            seen += page.items.map(\.id)
            after = page.next
        } while after != nil
        XCTAssertEqual(seen, Array(ids.reversed()), "newest first, every record once")
        let inBuilding = try await w.recordPage(grid, filter: RecordFilter(building: "3号楼")).items.count
        XCTAssertEqual(inBuilding, 3, "filtered by building")
        let bad = try await expectXiuhuaError("a bad cursor") { try await w.recordPage(grid, after: "nonsense") }
        guard case .InvalidInput = bad else { return XCTFail("expected InvalidInput, got \(bad)") }

        let byInitials = try await w.search("zxy")
        XCTAssertTrue(byInitials.contains { $0.kind == .resident && $0.id == alone }, "pinyin initials")
        let byWords = try await w.search("路灯不亮").filter { $0.kind == .record }.count
        XCTAssertEqual(byWords, 5, "a record's words")
        let byAddress = try await w.search("5号楼")
        XCTAssertTrue(byAddress.contains { $0.id == other }, "an address")
        let hits = try await w.search("曾秀英")
        XCTAssertFalse(hits.isEmpty)
        XCTAssertFalse(hits.contains { $0.snippet.contains("13800001234") || $0.title.contains("13800001234") },
                       "no phone number in a hit")
    }
}
