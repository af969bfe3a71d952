@file:OptIn(ExperimentalMaterial3Api::class)

package cn.xiuhua.app

import androidx.compose.foundation.clickable
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.items
import androidx.compose.material3.ExperimentalMaterial3Api
import androidx.compose.material3.ListItem
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.Text
import androidx.compose.material3.TopAppBar
import androidx.compose.runtime.Composable
import androidx.compose.ui.Modifier
import androidx.compose.ui.res.stringResource
import androidx.compose.ui.unit.dp
import androidx.navigation.NavHostController
import cn.xiuhua.ffi.FieldConflict
import cn.xiuhua.ffi.HouseholdSummary
import cn.xiuhua.ffi.TaskSummary

/**
 * Conflicts after a sync: household fields that two phones changed differently (pick the
 * right value), and tasks with transitions that lost (shown on the task, never dropped).
 */
@Composable
fun ConflictsScreen(state: AppState, nav: NavHostController) {
    val grid = state.grid ?: return
    val households: List<Pair<HouseholdSummary, List<FieldConflict>>> = state.collect(
        state.repo.live { householdsWithConflicts(grid).map { it to conflicts(it.id) } }, emptyList(), "hh", grid,
    )
    val records: List<Pair<cn.xiuhua.ffi.RecordSummary, List<FieldConflict>>> = state.collect(
        state.repo.live { recordsWithConflicts(grid).map { it to conflicts(it.id) } }, emptyList(), "records", grid,
    )
    val tasks: List<TaskSummary> = state.collect(state.repo.live { tasksWithConflicts(grid) }, emptyList(), "tasks", grid)
    Column(Modifier.fillMaxSize()) {
        TopAppBar(title = { Text(stringResource(R.string.tab_conflicts)) })
        if (households.isEmpty() && records.isEmpty() && tasks.isEmpty()) Text(stringResource(R.string.conflicts_none), Modifier.padding(16.dp))
        LazyColumn(Modifier.padding(horizontal = 8.dp)) {
            if (households.isNotEmpty()) item { Section(stringResource(R.string.conflicts_households)) }
            for ((h, fields) in households) {
                item(key = h.id) {
                    ListItem(
                        headlineContent = { Text("${h.building} ${h.unit} ${h.room}  ${h.headName}") },
                        modifier = Modifier.clickable { nav.navigate(Routes.route(Routes.HOUSEHOLD, "id" to h.id)) },
                    )
                }
                items(fields, key = { h.id + it.path }) { c ->
                    Column(Modifier.padding(start = 16.dp, bottom = 8.dp)) {
                        Text(stringResource(R.string.conflict_field, c.path))
                        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                            c.values.forEachIndexed { i, v ->
                                OutlinedButton(onClick = { state.act { state.repo.resolveConflict(h.id, c.path, i) } }) {
                                    Text(stringResource(R.string.conflict_keep, v.value, v.device))
                                }
                            }
                        }
                    }
                }
            }
            if (records.isNotEmpty()) item { Section(stringResource(R.string.conflicts_records)) }
            for ((r, fields) in records) {
                item(key = r.id) {
                    ListItem(
                        headlineContent = { Text(r.summary) },
                        modifier = Modifier.clickable { nav.navigate(Routes.route(Routes.RECORD, "id" to r.id)) },
                    )
                }
                items(fields, key = { r.id + it.path }) { c ->
                    Column(Modifier.padding(start = 16.dp, bottom = 8.dp)) {
                        Text(stringResource(R.string.conflict_field, c.path))
                        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                            c.values.forEachIndexed { i, v ->
                                OutlinedButton(onClick = { state.act { state.repo.resolveConflict(r.id, c.path, i) } }) {
                                    Text(stringResource(R.string.conflict_keep, v.value, v.device))
                                }
                            }
                        }
                    }
                }
            }
            if (tasks.isNotEmpty()) item { Section(stringResource(R.string.conflicts_tasks)) }
            items(tasks, key = { it.id }) { t ->
                ListItem(
                    headlineContent = { Text(t.title) },
                    supportingContent = { Text(stringResource(R.string.conflict_rejected, t.rejected)) },
                    modifier = Modifier.clickable { nav.navigate(Routes.route(Routes.TASK, "id" to t.id)) },
                )
            }
        }
    }
}
