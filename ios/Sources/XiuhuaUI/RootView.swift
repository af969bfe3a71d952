import SwiftUI
import Xiuhua

/// Tabs: my grid, tasks, conflicts, sync — as on Android.
public struct RootView: View {
    @StateObject private var model: AppModel

    public init(repo: XiuhuaRepository) { _model = StateObject(wrappedValue: AppModel(repo: repo)) }

    public var body: some View {
        TabView {
            NavigationStack { HomeView() }.tabItem { Label("tab_home", systemImage: "calendar") }
            NavigationStack { GridView() }.tabItem { Label("tab_grid", systemImage: "house") }
            NavigationStack { RecordsView() }.tabItem { Label("tab_records", systemImage: "square.and.pencil") }
            NavigationStack { TasksView() }.tabItem { Label("tab_tasks", systemImage: "checklist") }
            NavigationStack { ConflictsView() }.tabItem { Label("tab_conflicts", systemImage: "exclamationmark.triangle") }
            NavigationStack { SyncView() }.tabItem { Label("tab_sync", systemImage: "arrow.triangle.2.circlepath") }
        }
        .environmentObject(model)
        .task { await model.refreshIdentity() }
        .alert(item: Binding(get: { (model.error ?? model.notice).map(Message.init) },
                             set: { _ in model.error = nil; model.notice = nil })) { m in
            Alert(title: Text(m.text))
        }
    }
}

struct Message: Identifiable {
    let text: String
    var id: String { text }
}
