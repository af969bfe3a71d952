@file:OptIn(ExperimentalMaterial3Api::class)

package cn.xiuhua.app

import androidx.compose.foundation.clickable
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.LazyRow
import androidx.compose.foundation.lazy.items
import androidx.compose.material3.AlertDialog
import androidx.compose.material3.Button
import androidx.compose.material3.DropdownMenu
import androidx.compose.material3.DropdownMenuItem
import androidx.compose.material3.ExperimentalMaterial3Api
import androidx.compose.material3.FilterChip
import androidx.compose.material3.HorizontalDivider
import androidx.compose.material3.ListItem
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Text
import androidx.compose.material3.TextButton
import androidx.compose.material3.TopAppBar
import androidx.compose.runtime.Composable
import androidx.compose.runtime.LaunchedEffect
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.saveable.rememberSaveable
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.res.stringResource
import androidx.compose.ui.unit.dp
import androidx.navigation.NavHostController
import cn.xiuhua.XiuhuaRepository
import cn.xiuhua.ffi.HomeItem
import cn.xiuhua.ffi.HomeReason
import cn.xiuhua.ffi.RecordFilter

/**
 * What is due today: my overdue tasks, tasks due within three days, 督单 reminders, tasks
 * reopened by a bad rating, then households not visited this month; the grid switcher and
 * this month's visit coverage on top. Thin over `XiuhuaRepository.homeList` (tested on the JVM).
 */
@Composable
fun HomeScreen(state: AppState, nav: NavHostController) {
    val grid = state.grid
    Column(Modifier.fillMaxSize()) {
        TopAppBar(
            title = { Text(grid?.let { stringResource(R.string.grid_title, it) } ?: stringResource(R.string.app_name)) },
            actions = {
                TextButton(onClick = { nav.navigate(Routes.NEW_HOUSEHOLD) }) { Text(stringResource(R.string.new_household)) }
                GridSwitcher(state)
            },
        )
        if (grid == null) {
            Text(stringResource(R.string.grid_none), Modifier.padding(16.dp))
            return
        }
        val coverage = state.collect(state.repo.live(state.repo.changesOfKind("household")) { visitCoverage(grid) }, null, grid)
        coverage?.let {
            Text(
                stringResource(R.string.coverage_line, it.visited, it.registered, (it.ratio * 100).toInt()),
                Modifier.padding(horizontal = 16.dp),
                style = MaterialTheme.typography.titleSmall,
            )
        }
        val home: List<HomeItem> = state.collect(state.repo.live { homeList(grid, 100u) }, emptyList(), grid)
        if (home.isEmpty()) Text(stringResource(R.string.home_empty), Modifier.padding(16.dp))
        LazyColumn {
            items(home, key = { (it.task?.id ?: it.household?.id ?: "") + it.reason }) { item ->
                val t = item.task
                val h = item.household
                ListItem(
                    overlineContent = { Text(stringResource(reasonLabel(item.reason)) + " · " + formatTime(item.at)) },
                    headlineContent = { Text(t?.title ?: h?.let { "${it.building}${it.unit}${it.room} ${it.headName}" } ?: "") },
                    supportingContent = {
                        t?.let {
                            Text(listOfNotNull(it.number, it.address?.let { a -> "${a.building}${a.room} ${a.headName}" }, it.statusLabel).joinToString(" · "))
                        }
                    },
                    modifier = Modifier.clickable {
                        when {
                            t != null -> nav.navigate(Routes.route(Routes.TASK, "id" to t.id))
                            h != null -> nav.navigate(Routes.route(Routes.HOUSEHOLD, "id" to h.id))
                        }
                    },
                )
                HorizontalDivider()
            }
        }
    }
}

private fun reasonLabel(r: HomeReason): Int = when (r) {
    HomeReason.OVERDUE -> R.string.home_overdue
    HomeReason.DUE_SOON -> R.string.home_due_soon
    HomeReason.REMINDED -> R.string.home_reminded
    HomeReason.REOPENED -> R.string.home_reopened
    HomeReason.NOT_VISITED -> R.string.home_not_visited
}

/** The grids the worker holds grants on, each with the role held there; picks `state.grid`. */
@Composable
fun GridSwitcher(state: AppState) {
    var open by remember { mutableStateOf(false) }
    var grants by remember { mutableStateOf(emptyList<cn.xiuhua.ffi.Grant>()) }
    LaunchedEffect(open) { if (open) grants = state.repo.grants() }
    TextButton(onClick = { open = true }) { Text(stringResource(R.string.grid_switch)) }
    DropdownMenu(expanded = open, onDismissRequest = { open = false }) {
        for (g in grants) {
            DropdownMenuItem(
                text = { Text("${g.grid}（${g.role}）") },
                onClick = { state.grid = g.grid; open = false },
            )
        }
    }
}

/** The grid's 民情 records, newest first, filtered by building and status; paged by the core. */
@Composable
fun RecordsScreen(state: AppState, nav: NavHostController) {
    val grid = state.grid ?: return
    var building by rememberSaveable { mutableStateOf<String?>(null) }
    var status by rememberSaveable { mutableStateOf<String?>(null) }
    val buildings = state.collect(state.repo.liveBuildings(grid), emptyList(), grid)
    val page = state.collect(
        state.repo.live(state.repo.changesOfKind("record")) { recordPage(grid, RecordFilter(building, null, status, null), null, 50u) },
        null, grid, building, status,
    )
    Column(Modifier.fillMaxSize()) {
        TopAppBar(title = { Text(stringResource(R.string.tab_records)) })
        LazyRow(Modifier.padding(horizontal = 8.dp), horizontalArrangement = Arrangement.spacedBy(4.dp)) {
            items(buildings, key = { it.name }) { b ->
                FilterChip(selected = building == b.name, onClick = { building = if (building == b.name) null else b.name }, label = { Text(b.name) })
            }
        }
        LazyRow(Modifier.padding(horizontal = 8.dp), horizontalArrangement = Arrangement.spacedBy(4.dp)) {
            items(XiuhuaRepository.vocabulary.recordStatuses, key = { it.value }) { s ->
                FilterChip(selected = status == s.value, onClick = { status = if (status == s.value) null else s.value }, label = { Text(s.label) })
            }
        }
        LazyColumn {
            items(page?.items ?: emptyList(), key = { it.id }) { r ->
                ListItem(
                    headlineContent = { Text(r.summary) },
                    supportingContent = { Text(listOfNotNull(r.number, r.status, r.building, r.reporter).joinToString(" · ")) },
                    modifier = Modifier.clickable { nav.navigate(Routes.route(Routes.RECORD, "id" to r.id)) },
                )
                HorizontalDivider()
            }
        }
    }
}

/** A 民情 record: its number to give the resident, its status, its tasks, and 点单. */
@Composable
fun RecordDetailScreen(state: AppState, nav: NavHostController, id: String) {
    val r = state.collect(state.repo.live(state.repo.changesOf(id)) { record(id) }, null, id)
    var ordering by remember { mutableStateOf(false) }
    Column(Modifier.fillMaxSize()) {
        TopAppBar(title = { Text(r?.number ?: "") })
        if (r == null) return
        Column(Modifier.padding(16.dp), verticalArrangement = Arrangement.spacedBy(8.dp)) {
            Text("${r.category} · ${r.status}", style = MaterialTheme.typography.titleMedium)
            Text(r.description)
            Text(stringResource(R.string.record_reporter) + "：" + r.reporter + " · " + r.place)
            r.provisionalNumber?.let { Text(stringResource(R.string.number_was, it)) }
            for (t in r.tasks) {
                TextButton(onClick = { nav.navigate(Routes.route(Routes.TASK, "id" to t)) }) { Text(stringResource(R.string.open_task)) }
            }
            Button(onClick = { ordering = true }) { Text(stringResource(R.string.order_from_record)) }
        }
    }
    if (ordering && r != null) OrderDialog(state, r.grid, onDismiss = { ordering = false }) { level, assignee, days ->
        state.act(onDone = { ordering = false }) {
            val deadline = days?.let { state.repo.nowMs() + it * 24 * 3_600_000L }
            val task = state.repo.orderFromRecord(id, level, null, assignee, deadline)
            state.repo.task(task).number?.let { state.tell(it) }
            nav.navigate(Routes.route(Routes.TASK, "id" to task))
        }
    }
}

/** 点单: the level, the handler from the grid's people (names, not ids), the days allowed. */
@Composable
private fun OrderDialog(state: AppState, grid: String, onDismiss: () -> Unit, onOrder: (String, String?, Long?) -> Unit) {
    val levels = XiuhuaRepository.vocabulary.levels
    var level by remember { mutableStateOf(levels.first().value) }
    var assignee by remember { mutableStateOf<String?>(null) }
    var days by remember { mutableStateOf("3") }
    val people = state.collect(state.repo.live { gridPeople(grid) }, emptyList(), grid)
    AlertDialog(
        onDismissRequest = onDismiss,
        title = { Text(stringResource(R.string.order_from_record)) },
        text = {
            Column(verticalArrangement = Arrangement.spacedBy(8.dp)) {
                Row(horizontalArrangement = Arrangement.spacedBy(4.dp)) {
                    for (l in levels) FilterChip(selected = level == l.value, onClick = { level = l.value }, label = { Text(l.label) })
                }
                LazyRow(horizontalArrangement = Arrangement.spacedBy(4.dp)) {
                    items(people, key = { it.user }) { p ->
                        FilterChip(selected = assignee == p.user, onClick = { assignee = if (assignee == p.user) null else p.user },
                            label = { Text("${p.name}（${p.role}）") })
                    }
                }
                OutlinedTextField(days, { days = it.filter(Char::isDigit) }, label = { Text(stringResource(R.string.deadline_days)) })
            }
        },
        confirmButton = { TextButton(onClick = { onOrder(level, assignee, days.toLongOrNull()) }) { Text(stringResource(R.string.save)) } },
        dismissButton = { TextButton(onClick = onDismiss) { Text(stringResource(R.string.cancel)) } },
    )
}

/** A new household (a new tenant): its address, its head, their tags. Saved offline at once. */
@Composable
fun NewHouseholdScreen(state: AppState, nav: NavHostController) {
    val grid = state.grid ?: return
    val vocab = XiuhuaRepository.vocabulary
    var building by rememberSaveable { mutableStateOf("") }
    var unit by rememberSaveable { mutableStateOf("") }
    var room by rememberSaveable { mutableStateOf("") }
    var name by rememberSaveable { mutableStateOf("") }
    var gender by rememberSaveable { mutableStateOf(vocab.genders.first().value) }
    var birthYear by rememberSaveable { mutableStateOf("") }
    var phone by rememberSaveable { mutableStateOf("") }
    var idNumber by rememberSaveable { mutableStateOf("") }
    var tags by rememberSaveable { mutableStateOf(emptyList<String>()) }
    Column(Modifier.fillMaxSize()) {
        TopAppBar(title = { Text(stringResource(R.string.new_household)) })
        LazyColumn(Modifier.padding(16.dp), verticalArrangement = Arrangement.spacedBy(8.dp)) {
            item {
                Row(horizontalArrangement = Arrangement.spacedBy(4.dp)) {
                    OutlinedTextField(building, { building = it }, label = { Text(stringResource(R.string.address_building)) }, modifier = Modifier.weight(1f))
                    OutlinedTextField(unit, { unit = it }, label = { Text(stringResource(R.string.address_unit)) }, modifier = Modifier.weight(1f))
                    OutlinedTextField(room, { room = it }, label = { Text(stringResource(R.string.address_room)) }, modifier = Modifier.weight(1f))
                }
            }
            item { OutlinedTextField(name, { name = it }, label = { Text(stringResource(R.string.member_name)) }) }
            item {
                Row(horizontalArrangement = Arrangement.spacedBy(4.dp)) {
                    for (g in vocab.genders) FilterChip(selected = gender == g.value, onClick = { gender = g.value }, label = { Text(g.label) })
                }
            }
            item { OutlinedTextField(birthYear, { birthYear = it.filter(Char::isDigit).take(4) }, label = { Text(stringResource(R.string.member_birth_year)) }) }
            item { OutlinedTextField(phone, { phone = it }, label = { Text(stringResource(R.string.member_phone)) }) }
            item { OutlinedTextField(idNumber, { idNumber = it }, label = { Text(stringResource(R.string.member_id_number)) }) }
            item {
                LazyRow(horizontalArrangement = Arrangement.spacedBy(4.dp)) {
                    items(vocab.tags, key = { it.value }) { t ->
                        FilterChip(selected = t.value in tags, onClick = { tags = if (t.value in tags) tags - t.value else tags + t.value }, label = { Text(t.label) })
                    }
                }
            }
            item {
                Button(onClick = {
                    state.act {
                        // The core validates everything (phone, ID check digit, address) and says
                        // what to fix; nothing is saved until it is right.
                        val head = cn.xiuhua.ffi.NewMember(name, gender, birthYear.toIntOrNull() ?: 0, phone.ifBlank { null },
                            idNumber.ifBlank { null }, "户主", emptyList())
                        val id = state.repo.createHousehold(
                            cn.xiuhua.ffi.NewHousehold(cn.xiuhua.ffi.Address(grid, building, unit, room), listOf(head), tags, ""),
                        )
                        nav.navigate(Routes.route(Routes.HOUSEHOLD, "id" to id)) { popUpTo(Routes.HOME) }
                    }
                }) { Text(stringResource(R.string.save)) }
            }
        }
    }
}

/** Before the first sync: how much the phone will fetch per grid, to wait for Wi-Fi if large. */
@Composable
fun FirstSyncEstimate(state: AppState) {
    var estimate by remember { mutableStateOf<List<cn.xiuhua.ffi.GridEstimate>?>(null) }
    LaunchedEffect(Unit) {
        estimate = try { state.repo.firstSyncEstimate() } catch (e: cn.xiuhua.ffi.XiuhuaException) { null }
    }
    for (g in estimate ?: emptyList()) {
        Text(stringResource(R.string.estimate_line, g.grid, g.documents.toLong(), (g.bytes.toLong() + 524_288) / 1_048_576))
    }
}
