import SwiftUI
import Xiuhua

/// What is due today (my overdue, due within three days, 督单 reminders, reopened by a bad
/// rating, then households not visited this month), this month's visit coverage and the grid
/// switcher. Thin over `XiuhuaRepository.homeList` (tested on Linux).
struct HomeView: View {
    @EnvironmentObject var model: AppModel
    @State private var items: [HomeItem] = []
    @State private var coverage: Coverage?

    var body: some View {
        List {
            if let c = coverage {
                Text("coverage_line \(c.visited) \(c.registered) \(Int(c.ratio * 100))").font(.subheadline)
            }
            if items.isEmpty { Text("home_empty") }
            ForEach(Array(items.enumerated()), id: \.offset) { _, item in
                if let t = item.task {
                    NavigationLink(destination: TaskView(id: t.id)) {
                        VStack(alignment: .leading) {
                            Text(LocalizedStringKey(reasonKey(item.reason))).font(.caption)
                            Text(t.title)
                            Text([t.number, t.address.map { "\($0.building)\($0.room) \($0.headName)" }, t.statusLabel]
                                .compactMap { $0 }.joined(separator: " · ")).font(.caption)
                        }
                    }
                } else if let h = item.household {
                    NavigationLink(value: h.id) {
                        VStack(alignment: .leading) {
                            Text(LocalizedStringKey(reasonKey(item.reason))).font(.caption)
                            Text("\(h.building)\(h.unit)\(h.room) \(h.headName)")
                        }
                    }
                }
            }
        }
        .navigationTitle(model.grid ?? "app_name")
        .navigationDestination(for: String.self) { HouseholdView(id: $0) }
        .toolbar {
            NavigationLink("new_household", destination: NewHouseholdView())
            GridSwitcher()
        }
        .task(id: "\(model.grid ?? "")|\(model.revision)") {
            guard let g = model.grid else { return }
            items = await model.load { try await model.repo.homeList(g) } ?? []
            coverage = await model.load { try await model.repo.visitCoverage(g) }
        }
    }

    private func reasonKey(_ r: HomeReason) -> String {
        switch r {
        case .overdue: return "home_overdue"
        case .dueSoon: return "home_due_soon"
        case .reminded: return "home_reminded"
        case .reopened: return "home_reopened"
        case .notVisited: return "home_not_visited"
        }
    }
}

/// The grids the worker holds grants on, each with the role held there.
struct GridSwitcher: View {
    @EnvironmentObject var model: AppModel
    @State private var grants: [Grant] = []

    var body: some View {
        Menu("grid_switch") {
            ForEach(grants, id: \.grid) { g in
                Button("\(g.grid)（\(g.role)）") { model.grid = g.grid }
            }
        }
        .task(id: model.revision) { grants = await model.load { try await model.repo.grants() } ?? [] }
    }
}

/// The grid's 民情 records, newest first, filtered by status.
struct RecordsView: View {
    @EnvironmentObject var model: AppModel
    @State private var status: String?
    @State private var items: [RecordItem] = []

    var body: some View {
        List {
            Picker("record_status", selection: $status) {
                Text("all").tag(String?.none)
                ForEach(XiuhuaRepository.vocabulary.recordStatuses, id: \.value) { Text($0.label).tag(Optional($0.value)) }
            }
            ForEach(items, id: \.id) { r in
                NavigationLink(destination: RecordDetailView(id: r.id)) {
                    VStack(alignment: .leading) {
                        Text(r.summary)
                        Text([r.number, r.status, r.building, r.reporter].compactMap { $0 }.joined(separator: " · ")).font(.caption)
                    }
                }
            }
        }
        .navigationTitle("tab_records")
        .task(id: "\(model.grid ?? "")|\(status ?? "")|\(model.revision)") {
            guard let g = model.grid else { return }
            items = await model.load { try await model.repo.recordPage(g, filter: RecordFilter(status: status)).items } ?? []
        }
    }
}

/// A 民情 record: the number to give the resident, its status and tasks, and 点单.
struct RecordDetailView: View {
    @EnvironmentObject var model: AppModel
    let id: String
    @State private var record: RecordDetail?
    @State private var people: [Person] = []
    @State private var level = XiuhuaRepository.vocabulary.levels.first?.value ?? ""
    @State private var assignee: String?
    @State private var days = 3

    var body: some View {
        Form {
            if let r = record {
                Section {
                    Text("\(r.category) · \(r.status)").font(.headline)
                    Text(r.description)
                    Text("\(r.reporter) · \(r.place)").font(.caption)
                    if let p = r.provisionalNumber { Text("number_was \(p)").font(.caption) }
                    ForEach(r.tasks, id: \.self) { t in NavigationLink("open_task", destination: TaskView(id: t)) }
                }
                Section("order_from_record") {
                    Picker("level", selection: $level) {
                        ForEach(XiuhuaRepository.vocabulary.levels, id: \.value) { Text($0.label).tag($0.value) }
                    }
                    Picker("task_assignee_pick", selection: $assignee) {
                        Text("—").tag(String?.none)
                        ForEach(people, id: \.user) { p in Text("\(p.name)（\(p.role)）").tag(Optional(p.user)) }
                    }
                    Stepper("deadline_days \(days)", value: $days, in: 1...60)
                    Button("order_from_record") {
                        model.act {
                            let deadline = try await model.repo.nowMs() + Int64(days) * 24 * 3_600_000
                            let task = try await model.repo.orderFromRecord(id, level: level, assignee: assignee, deadline: deadline)
                            if let n = try await model.repo.task(task).number { model.notice = n }
                        }
                    }
                }
            }
        }
        .navigationTitle(record?.number ?? "")
        .task(id: model.revision) {
            record = await model.load { try await model.repo.record(id) }
            if let g = record?.grid { people = await model.load { try await model.repo.gridPeople(g) } ?? [] }
        }
    }
}

/// A new household (a new tenant): its address, its head, their tags. Saved offline at once;
/// the core validates everything and says what to fix.
struct NewHouseholdView: View {
    @EnvironmentObject var model: AppModel
    @Environment(\.dismiss) private var dismiss
    @State private var building = ""
    @State private var unit = ""
    @State private var room = ""
    @State private var name = ""
    @State private var gender = XiuhuaRepository.vocabulary.genders.first?.value ?? ""
    @State private var birthYear = ""
    @State private var phone = ""
    @State private var idNumber = ""
    @State private var tags: Set<String> = []

    var body: some View {
        Form {
            Section {
                TextField("address_building", text: $building)
                TextField("address_unit", text: $unit)
                TextField("address_room", text: $room)
            }
            Section {
                TextField("member_name", text: $name)
                Picker("member_gender", selection: $gender) {
                    ForEach(XiuhuaRepository.vocabulary.genders, id: \.value) { Text($0.label).tag($0.value) }
                }
                TextField("member_birth_year", text: $birthYear).keyboardType(.numberPad)
                TextField("member_phone", text: $phone).keyboardType(.phonePad)
                TextField("member_id_number", text: $idNumber)
            }
            Section {
                ForEach(XiuhuaRepository.vocabulary.tags, id: \.value) { t in
                    Toggle(t.label, isOn: Binding(get: { tags.contains(t.value) },
                                                  set: { on in if on { tags.insert(t.value) } else { tags.remove(t.value) } }))
                }
            }
            Button("save") {
                guard let grid = model.grid else { return }
                let head = NewMember(name: name, gender: gender, birthYear: Int32(birthYear) ?? 0,
                                     phone: phone.isEmpty ? nil : phone, idNumber: idNumber.isEmpty ? nil : idNumber,
                                     relation: "户主", tags: [])
                let h = NewHousehold(address: Address(grid: grid, building: building, unit: unit, room: room),
                                     members: [head], tags: Array(tags), note: "")
                model.act { _ = try await model.repo.createHousehold(h); dismiss() }
            }
        }
        .navigationTitle("new_household")
    }
}
