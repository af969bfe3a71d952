"""The IT staff's import script and queries, driving a real store from Python."""

import io
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import xiuhua_ffi as xh  # noqa: E402  (generated; on sys.path via scripts/python-tests.sh)
import xiuhua_import  # noqa: E402

GRID = "grid-1"
CSV = """网格,楼栋,单元,室,姓名,性别,出生年份,电话,身份证号,关系,标签
grid-1,3号楼,1单元,101,张三,男,1949,13800001234,11010519491231002X,户主,党员
grid-1,3号楼,1单元,101,李梅,女,1952,,,配偶,
grid-1,3号楼,2单元,202,王五,男,1960,13900002222,,户主,低保;残疾
grid-1,12号楼,1单元,502,赵六,男,1938,,,户主,独居老人
grid-1,12号楼,1单元,503,钱七,女,1990,12345,,户主,
grid-1,12号楼,1单元,504,孙八,女,1991,,,户主,VIP
"""


def it_actor(device="it-import"):
    return xh.Actor(user="u-it", name="信息员", role="管理员", device=device)


class ImportTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "grid.db")

    def tearDown(self):
        self.dir.cleanup()

    def test_import_households_from_csv_and_query_them(self):
        store = xh.XiuhuaStore.open(self.path, "it-key", it_actor())
        r = xiuhua_import.import_csv(store, io.StringIO(CSV))
        self.assertEqual(len(r.households), 3)
        self.assertEqual(r.residents, 4)
        # Bad rows are reported with their line and the core's readable message.
        self.assertEqual([line for line, _ in r.errors], [6, 7])
        self.assertIn("invalid phone", r.errors[0][1])
        # The field is named, its value is not (a value typed in the wrong column may be a
        # resident's ID or phone number): the line number points the IT staff to it.
        self.assertIn("invalid Tag", r.errors[1][1])
        self.assertNotIn("VIP", r.errors[1][1])

        buildings = {b.name: b.households for b in store.buildings(GRID)}
        self.assertEqual(buildings, {"3号楼": 2, "12号楼": 1})
        self.assertEqual(store.units(GRID, "3号楼"), ["1单元", "2单元"])
        hh = store.households_in(GRID, "3号楼", "1单元")
        self.assertEqual([(h.room, h.head_name, h.member_count) for h in hh], [("101", "张三", 2)])
        hits = store.search_residents("zs", 10)
        self.assertEqual(hits[0].name, "张三")
        self.assertNotIn("19491231", hits[0].id_masked or "", "ID numbers are masked in lists")
        detail = store.household(hh[0].id)
        self.assertEqual(detail.members[0].id_number, "11010519491231002X")
        ledger = store.ledger(GRID)
        self.assertEqual((ledger.households, ledger.residents), (3, 4))
        self.assertEqual([h.what for h in store.history(hh[0].id)], ["register household"])

    def test_command_line_import_and_reopen_with_the_key(self):
        csv_path = os.path.join(self.dir.name, "grid.csv")
        with open(csv_path, "w", encoding="utf-8") as f:
            f.write(CSV)
        code = xiuhua_import.main([self.path, csv_path, "--key", "k"])
        self.assertEqual(code, 1, "bad rows make the exit code non-zero")
        store = xh.XiuhuaStore.open(self.path, "k", it_actor())
        self.assertEqual(store.ledger(GRID).households, 3)
        with self.assertRaises(xh.XiuhuaError.AlreadyOpen):
            xh.XiuhuaStore.open(self.path, "k", it_actor())
        del store  # the one open store is released; a second open is refused while it lives
        with self.assertRaises(xh.XiuhuaError.WrongKey) as cm:
            xh.XiuhuaStore.open(self.path, "wrong", it_actor())
        self.assertEqual(cm.exception.detail, "the encryption key does not open this database")
        self.assertIn("the encryption key does not open this database", str(cm.exception))

    def test_errors_are_readable_python_exceptions(self):
        store = xh.XiuhuaStore.open_in_memory(it_actor())
        with self.assertRaises(xh.XiuhuaError.InvalidInput) as cm:
            store.create_record(xh.NewRecord(grid=GRID, category="其他", description="x", reporter="张三",
                                             household=None, building=None, place=""))
        self.assertEqual(cm.exception.field, "Category")
        self.assertIn("矛盾纠纷", str(cm.exception))
        with self.assertRaises(xh.XiuhuaError.NotFound):
            store.household("hh-nope")
        with self.assertRaises(xh.XiuhuaError.InvalidInput):
            xh.XiuhuaStore.open("", None, it_actor())

    def test_lists_search_and_numbers_for_a_report_script(self):
        store = xh.XiuhuaStore.open_in_memory(it_actor())
        xiuhua_import.import_csv(store, io.StringIO(CSV))
        rec = store.create_record(xh.NewRecord(grid=GRID, category="设施报修", description="3号楼楼道声控灯坏了",
                                               reporter="张三", household=None, building="3号楼", place="楼道"))
        store.create_record(xh.NewRecord(grid=GRID, category="环境卫生", description="12号楼垃圾桶满了",
                                         reporter="赵六", household=None, building="12号楼", place="门口"))
        page = store.record_page(GRID, xh.RecordFilter(building="3号楼"), None, 10)
        self.assertEqual([i.id for i in page.items], [rec])
        self.assertIsNone(page.next)
        number = page.items[0].number
        self.assertIsNotNone(number, "every record has a number, even on a store never synced")
        hit = store.find_by_number(number)
        self.assertEqual((hit.kind, hit.id), ("record", rec))
        self.assertIsNone(store.find_by_number("grid-1-1999-000001"))
        self.assertIn(rec, [h.id for h in store.search("声控灯", 10)])
        # Enums print their names, as a report script shows them.
        home = store.home_list(GRID, 50)
        self.assertTrue(home, "unvisited households are on the home list")
        self.assertEqual(home[0].reason, xh.HomeReason.NOT_VISITED)
        self.assertIn("NOT_VISITED", str(home[0].reason))
        self.assertIn("NOT_VISITED", repr(home[0].reason))
        self.assertEqual(str(xh.ChangeOrigin.LOCAL), "ChangeOrigin.LOCAL")

    def test_observer_from_python(self):
        store = xh.XiuhuaStore.open_in_memory(it_actor())
        seen = []

        class Observer(xh.StoreObserver):
            def on_change(self, event):
                seen.append(event)

        handle = store.add_observer(Observer())
        xiuhua_import.import_csv(store, io.StringIO(CSV))
        self.assertEqual(len(seen), 3)
        self.assertTrue(all(e.origin == xh.ChangeOrigin.LOCAL and e.docs[0].kind == "household" for e in seen))
        store.remove_observer(handle)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"python: {result.testsRun - failed} passed, {failed} failed")
    sys.exit(1 if failed or not result.wasSuccessful() else 0)
