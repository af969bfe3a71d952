import SwiftUI
import Xiuhua

/// 代办: mine / overdue / by level.
struct TasksView: View {
    @EnvironmentObject var model: AppModel
    @State private var tab = 0
    @State private var level = XiuhuaRepository.vocabulary.levels.first?.value ?? ""
    @State private var tasks: [TaskSummary] = []

    var body: some View {
        List {
            Picker("", selection: $tab) {
                Text("tasks_mine").tag(0)
                Text("tasks_overdue").tag(1)
                Text("tasks_by_level").tag(2)
            }.pickerStyle(.segmented)
            if tab == 2 {
                Picker("", selection: $level) {
                    ForEach(XiuhuaRepository.vocabulary.levels, id: \.value) { Text($0.label).tag($0.value) }
                }.pickerStyle(.segmented)
            }
            ForEach(tasks, id: \.id) { t in
                NavigationLink(destination: TaskView(id: t.id)) {
                    VStack(alignment: .leading) {
                        Text(t.title)
                        Text([t.level, t.category, t.statusLabel, t.assignee].compactMap { $0 }.joined(separator: " · ")).font(.caption)
                        if let d = t.deadline { Text("deadline \(formatTime(d))").font(.caption) }
                    }
                }
            }
        }
        .navigationTitle("tab_tasks")
        .task(id: "\(tab)|\(level)|\(model.revision)|\(model.user)") {
            guard let g = model.grid else { return }
            tasks = await model.load {
                switch tab {
                case 0: return try await model.repo.myTasks(model.user)
                case 1: return try await model.repo.overdueTasks(g)
                default: return try await model.repo.tasks(g, level: level)
                }
            } ?? []
        }
    }
}

/// A task, its events (rejected ones with their reason) and the five-order actions.
struct TaskView: View {
    @EnvironmentObject var model: AppModel
    let id: String
    @State private var task: TaskDetail?
    @State private var text = ""
    @State private var score = 5
    @State private var sendBack = false

    var body: some View {
        List {
            if let t = task {
                Section {
                    Text([t.statusLabel, t.level, t.category].compactMap { $0 }.joined(separator: " · ")).font(.headline)
                    if let n = t.number { Text("number_line \(n)") }
                    Text("task_assignee \(t.assignee ?? "—")")
                    Text("deadline \(formatTime(t.deadline))") + Text(t.overdue ? " ⚠︎" : "")
                    if let r = t.lastRating { Text("task_rating \(r.score) \(r.comment)") }
                    if !t.description.isEmpty { Text(t.description) }
                }
                Section("actions") {
                    TextField("field_text", text: $text)
                    Stepper("★ \(score)", value: $score, in: 1...5)
                    Toggle("field_send_back", isOn: $sendBack)
                    ForEach(actions(for: t.status), id: \.0) { (label, action) in
                        Button(LocalizedStringKey(label)) { model.act { _ = try await model.repo.taskAction(id, action()) } }
                    }
                }
                Section("events") {
                    ForEach(t.events, id: \.id) { e in
                        VStack(alignment: .leading) {
                            Text("\(formatTime(e.at)) · \(e.authorName)（\(e.role)）").font(.caption)
                            Text(LocalizedStringKey("ev_\(e.kind)")) + Text(e.assignee.map { " → \($0)" } ?? "")
                            if !e.text.isEmpty { Text(e.text).font(.caption) }
                            switch e.outcome {
                            case .applied: EmptyView()
                            case .rejected(let reason): Text("event_rejected \(reason)").foregroundColor(.red).font(.caption)
                            case .held(let reason): Text("event_held \(reason)").foregroundColor(.orange).font(.caption)
                            }
                        }
                    }
                }
            }
        }
        .navigationTitle(task?.title ?? "")
        .task(id: model.revision) { task = await model.load { try await model.repo.task(id) } }
    }

    /// The actions that can apply in this status; the core still decides.
    private func actions(for status: String) -> [(String, () -> TaskAction)] {
        let t = text, s = Int32(score), back = sendBack
        switch status {
        case "ordered", "assigned":
            return [("act_assign", { .assign(assignee: t) }), ("act_accept", { .accept }),
                    ("act_escalate", { .escalate(tier: "community", unit: nil) }), ("act_cancel", { .cancel(reason: t) })]
        case "in_progress":
            return [("act_complete", { .complete(result: t) }), ("act_note", { .note(text: t) }),
                    ("act_supervise", { .supervise(text: t, newDeadline: nil) })]
        case "done":
            return [("act_rate", { .rate(score: s, comment: t) }), ("act_inquire", { .inquire(text: t, sendBack: back) })]
        case "closed":
            return [("act_inquire", { .inquire(text: t, sendBack: back) })]
        default:
            return [("act_note", { .note(text: t) })]
        }
    }
}

/// Conflicts: household fields two phones changed differently, tasks with actions that lost.
struct ConflictsView: View {
    @EnvironmentObject var model: AppModel
    @State private var households: [(HouseholdSummary, [FieldConflict])] = []
    @State private var records: [(RecordSummary, [FieldConflict])] = []
    @State private var tasks: [TaskSummary] = []

    var body: some View {
        List {
            if households.isEmpty && records.isEmpty && tasks.isEmpty { Text("conflicts_none") }
            ForEach(households, id: \.0.id) { (h, fields) in
                Section("\(h.building) \(h.unit) \(h.room) \(h.headName)") {
                    ForEach(fields, id: \.path) { c in
                        VStack(alignment: .leading) {
                            Text(c.path).font(.caption)
                            ForEach(Array(c.values.enumerated()), id: \.offset) { i, v in
                                Button("conflict_keep \(v.value) \(v.device)") {
                                    model.act { try await model.repo.resolveConflict(h.id, path: c.path, choice: UInt32(i)) }
                                }
                            }
                        }
                    }
                }
            }
            ForEach(records, id: \.0.id) { (r, fields) in
                Section(r.summary) {
                    ForEach(fields, id: \.path) { c in
                        VStack(alignment: .leading) {
                            Text(c.path).font(.caption)
                            ForEach(Array(c.values.enumerated()), id: \.offset) { i, v in
                                Button("conflict_keep \(v.value) \(v.device)") {
                                    model.act { try await model.repo.resolveConflict(r.id, path: c.path, choice: UInt32(i)) }
                                }
                            }
                        }
                    }
                }
            }
            if !tasks.isEmpty {
                Section("conflicts_tasks") {
                    ForEach(tasks, id: \.id) { t in
                        NavigationLink(destination: TaskView(id: t.id)) { Text("\(t.title) (\(t.rejected))") }
                    }
                }
            }
        }
        .navigationTitle("tab_conflicts")
        .task(id: model.revision) {
            guard let g = model.grid else { return }
            let repo = model.repo
            households = await model.load {
                var out: [(HouseholdSummary, [FieldConflict])] = []
                for h in try await repo.householdsWithConflicts(g) { out.append((h, try await repo.conflicts(h.id))) }
                return out
            } ?? []
            records = await model.load {
                var out: [(RecordSummary, [FieldConflict])] = []
                for r in try await repo.recordsWithConflicts(g) { out.append((r, try await repo.conflicts(r.id))) }
                return out
            } ?? []
            tasks = await model.load { try await repo.tasksWithConflicts(g) } ?? []
        }
    }
}

/// Sync at the station with an honest status; enrollment on first start.
struct SyncView: View {
    @EnvironmentObject var model: AppModel
    @State private var status: SyncStatus?
    @State private var progress: String?
    @State private var report: SyncReport?
    @State private var url = "https://"
    @State private var code = ""
    @State private var tick = 0
    @State private var estimate: [GridEstimate] = []

    var body: some View {
        Form {
            if let s = status {
                if !s.enrolled {
                    Text("enroll_intro")
                    TextField("enroll_url", text: $url).textInputAutocapitalization(.never)
                    TextField("enroll_code", text: $code)
                        .textInputAutocapitalization(.characters)
                        .autocorrectionDisabled()
                    Button("enroll_button") {
                        model.act {
                            _ = try await model.repo.enroll(serverUrl: url, code: code, deviceName: UIDevice.current.name)
                            await model.refreshIdentity()
                            tick += 1
                        }
                    }
                } else {
                    Text("sync_server \(s.serverUrl ?? "")")
                    Text("sync_pending \(s.pendingChanges)")
                    Text("sync_last_success \(s.lastSuccessMs.map { formatTime($0) } ?? String(localized: "sync_never"))")
                    if s.lastSuccessMs == nil {
                        // Before the first sync: how much it will fetch, to wait for Wi-Fi if large.
                        ForEach(estimate, id: \.grid) { g in
                            Text("estimate_line \(g.grid) \(g.documents) \((g.bytes + 524_288) / 1_048_576)")
                        }
                    }
                    if let e = s.lastError { Text("sync_last_error \(formatTime(s.lastErrorMs)) \(e)").foregroundColor(.red) }
                    ForEach(s.refused, id: \.doc) { r in Text("sync_refused \(r.doc) \(r.reason)").foregroundColor(.red) }
                    if let p = progress { ProgressView(p) }
                    Button("sync_now") {
                        progress = "…"
                        model.act {
                            defer { progress = nil; tick += 1 }
                            report = try await model.repo.sync { phase, done, total in
                                Task { @MainActor in progress = "\(phase) \(done)/\(total.map(String.init) ?? "?")" }
                            }
                            await model.refreshIdentity()
                        }
                    }.disabled(progress != nil || s.running)
                    if let r = report { Text("sync_report \(r.pushed) \(r.pulled) \(r.conflicts) \(r.rejected.count)") }
                }
            }
        }
        .navigationTitle("tab_sync")
        .task(id: "\(model.revision)|\(tick)") {
            status = await model.load { try await model.repo.syncStatus() }
            if status?.enrolled == true && status?.lastSuccessMs == nil {
                estimate = await model.load { try await model.repo.firstSyncEstimate() } ?? []
            }
        }
    }
}
