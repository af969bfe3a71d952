import SwiftUI
import Xiuhua

/// My grid: buildings, and a resident search (name, pinyin, initials, phone suffix).
struct GridView: View {
    @EnvironmentObject var model: AppModel
    @State private var buildings: [Building] = []
    @State private var query = ""
    @State private var hits: [ResidentHit] = []
    @State private var byNumber: NumberHit?

    var body: some View {
        List {
            if model.grid == nil {
                Text("grid_none")
            } else if !query.isEmpty {
                if let n = byNumber {
                    // A resident reading out the number on their slip (罗河-2026-000123).
                    if n.kind == "task" {
                        NavigationLink(destination: TaskView(id: n.id)) { Text("number_line \(n.number)") }
                    } else {
                        Text("number_line \(n.number)")
                    }
                }
                ForEach(hits, id: \.member) { h in
                    NavigationLink(value: h.household) {
                        VStack(alignment: .leading) {
                            Text(h.name)
                            Text([h.building, h.relation, h.phone, h.idMasked].compactMap { $0 }.joined(separator: " · ")).font(.caption)
                        }
                    }
                }
            } else {
                ForEach(buildings, id: \.name) { b in
                    NavigationLink(destination: UnitsView(building: b.name)) {
                        LabeledContent(b.name, value: "\(b.households)")
                    }
                }
            }
        }
        .searchable(text: $query, prompt: Text("search_hint"))
        .navigationTitle(model.grid ?? "app_name")
        .navigationDestination(for: String.self) { HouseholdView(id: $0) }
        .task(id: "\(model.grid ?? "")|\(model.revision)") {
            if let g = model.grid { buildings = await model.load { try await model.repo.buildings(g) } ?? [] }
        }
        .task(id: query) {
            try? await Task.sleep(nanoseconds: 250_000_000)
            hits = query.isEmpty ? [] : (await model.load { try await model.repo.searchResidents(query) } ?? [])
            let looksLikeNumber = query.filter { $0 == "-" }.count >= 2
            byNumber = looksLikeNumber ? (await model.load { try await model.repo.findByNumber(query) } ?? nil) : nil
        }
    }
}

struct UnitsView: View {
    @EnvironmentObject var model: AppModel
    let building: String
    @State private var units: [String] = []

    var body: some View {
        List(units, id: \.self) { u in
            NavigationLink(u, destination: HouseholdsView(building: building, unit: u))
        }
        .navigationTitle(building)
        .task(id: model.revision) {
            if let g = model.grid { units = await model.load { try await model.repo.units(g, building) } ?? [] }
        }
    }
}

struct HouseholdsView: View {
    @EnvironmentObject var model: AppModel
    let building: String
    let unit: String
    @State private var households: [HouseholdSummary] = []

    var body: some View {
        List(households, id: \.id) { h in
            NavigationLink(destination: HouseholdView(id: h.id)) {
                VStack(alignment: .leading) {
                    Text("\(h.room)  \(h.headName)")
                    Text(([String(localized: "member_count \(h.memberCount)")] + h.tags).joined(separator: " · ")).font(.caption)
                }
            }
        }
        .navigationTitle("\(building) \(unit)")
        .task(id: model.revision) {
            if let g = model.grid { households = await model.load { try await model.repo.households(g, building, unit: unit) } ?? [] }
        }
    }
}

/// A household: members, tags, visits; add a visit; log a 民情 record about it.
struct HouseholdView: View {
    @EnvironmentObject var model: AppModel
    let id: String
    @State private var household: Household?
    @State private var addingVisit = false
    @State private var newRecord = false
    @State private var showIds = false
    @State private var editing: Member?
    @State private var correcting = false

    var body: some View {
        List {
            if let h = household {
                Section("members") {
                    ForEach(h.members, id: \.id) { m in
                        VStack(alignment: .leading) {
                            Text("\(m.name)（\(m.relation)）" + (m.status == "在册" ? "" : " · \(m.status)"))
                            Text(([m.gender, "\(m.birthYear)", m.phone, showIds ? m.idNumber : maskId(m.idNumber)].compactMap { $0 } + m.tags)
                                .joined(separator: " · ")).font(.caption)
                        }
                        .onTapGesture { editing = m }
                    }
                    Toggle("show_ids", isOn: $showIds)
                }
                if !h.tags.isEmpty { Section("tags") { Text(h.tags.joined(separator: " · ")) } }
                if !h.note.isEmpty { Section("note") { Text(h.note) } }
                Section("visits") {
                    ForEach(h.visits.reversed(), id: \.id) { v in
                        VStack(alignment: .leading) {
                            Text(v.purpose)
                            Text("\(formatTime(v.at)) · \(v.byName)").font(.caption)
                            if !v.note.isEmpty { Text(v.note).font(.caption) }
                            if let f = v.followUp { Text("follow_up \(f)").font(.caption) }
                        }
                    }
                }
            }
        }
        .navigationTitle(household.map { "\($0.address.building) \($0.address.unit) \($0.address.room)" } ?? "")
        .toolbar {
            Button("add_visit") { addingVisit = true }
            Button("new_record") { newRecord = true }
            Menu("more") {
                Button("correct_address") { correcting = true }
                Button(household?.movedOutAt == nil ? "mark_moved_out" : "mark_back") {
                    let out = household?.movedOutAt == nil
                    model.act { try await model.repo.setHouseholdMovedOut(id, out) }
                }
            }
        }
        .sheet(item: Binding(get: { editing.map { EditingMember(member: $0) } }, set: { editing = $0?.member })) { e in
            MemberSheet(household: id, member: e.member)
        }
        .sheet(isPresented: $correcting) {
            if let a = household?.address { AddressSheet(household: id, address: a) }
        }
        .sheet(isPresented: $addingVisit) { VisitSheet(household: id) }
        .sheet(isPresented: $newRecord) { NewRecordView(household: id, building: household?.address.building) }
        .task(id: model.revision) { household = await model.load { try await model.repo.household(id) } }
    }
}

struct VisitSheet: View {
    @EnvironmentObject var model: AppModel
    @Environment(\.dismiss) var dismiss
    let household: String
    @State private var purpose = ""
    @State private var note = ""
    @State private var followUp = ""

    var body: some View {
        NavigationStack {
            Form {
                TextField("visit_purpose", text: $purpose)
                TextField("visit_note", text: $note, axis: .vertical)
                TextField("visit_follow_up", text: $followUp)
            }
            .toolbar {
                Button("save") {
                    model.act {
                        _ = try await model.repo.addVisit(household, purpose: purpose, note: note, followUp: followUp.isEmpty ? nil : followUp)
                        dismiss()
                    }
                }
            }
        }
    }
}

/// A new 民情 record: saved on the phone at once, uploaded at the next sync.
struct NewRecordView: View {
    @EnvironmentObject var model: AppModel
    @Environment(\.dismiss) var dismiss
    let household: String?
    let building: String?
    @State private var category = XiuhuaRepository.vocabulary.categories.first?.value ?? ""
    @State private var description = ""
    @State private var reporter = ""
    @State private var place = ""

    var body: some View {
        NavigationStack {
            Form {
                Picker("record_category", selection: $category) {
                    ForEach(XiuhuaRepository.vocabulary.categories, id: \.value) { Text($0.label).tag($0.value) }
                }
                TextField("record_description", text: $description, axis: .vertical)
                TextField("record_reporter", text: $reporter)
                TextField("record_place", text: $place)
                Text("record_offline_hint").font(.caption)
            }
            .navigationTitle("new_record")
            .toolbar {
                Button("save") {
                    guard let grid = model.grid else { return }
                    let r = NewRecord(grid: grid, category: category, description: description, reporter: reporter,
                                      household: household, building: building, place: place)
                    model.act {
                        let id = try await model.repo.createRecord(r)
                        // The number to give the resident, even offline (a provisional one,
                        // 临, is replaced at the next sync and still finds the record).
                        if let n = try await model.repo.record(id).number {
                            model.notice = String(format: NSLocalizedString("record_saved_number %@", bundle: .module, comment: ""), n)
                        }
                        dismiss()
                    }
                }
            }
        }
    }
}

struct EditingMember: Identifiable {
    let member: Member
    var id: String { member.id }
}

/// A member's phone (validated by the core) and status: moved out or deceased.
struct MemberSheet: View {
    @EnvironmentObject var model: AppModel
    @Environment(\.dismiss) private var dismiss
    let household: String
    let member: Member
    @State private var phone = ""
    @State private var status = ""

    var body: some View {
        Form {
            TextField("member_phone", text: $phone).keyboardType(.phonePad)
            Picker("member_status", selection: $status) {
                ForEach(["在册", "迁出", "去世"], id: \.self) { Text($0).tag($0) }
            }
            Button("save") {
                let (p, s) = (phone, status)
                model.act {
                    if p != (member.phone ?? "") { try await model.repo.setMemberPhone(household, member: member.id, phone: p.isEmpty ? nil : p) }
                    if s != member.status { try await model.repo.setMemberStatus(household, member: member.id, status: s) }
                    dismiss()
                }
            }
        }
        .navigationTitle(member.name)
        .onAppear { phone = member.phone ?? ""; status = member.status }
    }
}

/// A wrong building, unit or room corrected (or a move within the grid).
struct AddressSheet: View {
    @EnvironmentObject var model: AppModel
    @Environment(\.dismiss) private var dismiss
    let household: String
    let address: Address
    @State private var building = ""
    @State private var unit = ""
    @State private var room = ""

    var body: some View {
        Form {
            TextField("address_building", text: $building)
            TextField("address_unit", text: $unit)
            TextField("address_room", text: $room)
            Button("save") {
                let (b, u, r) = (building, unit, room)
                model.act { try await model.repo.moveHousehold(household, building: b, unit: u, room: r); dismiss() }
            }
        }
        .navigationTitle("correct_address")
        .onAppear { building = address.building; unit = address.unit; room = address.room }
    }
}
