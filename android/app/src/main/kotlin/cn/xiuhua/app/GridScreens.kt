@file:OptIn(ExperimentalMaterial3Api::class)

package cn.xiuhua.app

import androidx.compose.foundation.clickable
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.items
import androidx.compose.material3.ExperimentalMaterial3Api
import androidx.compose.material3.HorizontalDivider
import androidx.compose.material3.ListItem
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Text
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
import cn.xiuhua.ffi.ResidentHit
import cn.xiuhua.ffi.XiuhuaException
import cn.xiuhua.readableMessage
import kotlinx.coroutines.delay

/** My grid: its buildings, and a resident search (name, pinyin, initials, phone suffix). */
@Composable
fun GridScreen(state: AppState, nav: NavHostController) {
    val grid = state.grid
    Column(Modifier.fillMaxSize()) {
        TopAppBar(title = { Text(grid?.let { stringResource(R.string.grid_title, it) } ?: stringResource(R.string.app_name)) })
        if (grid == null) {
            Text(stringResource(R.string.grid_none), Modifier.padding(16.dp))
            return
        }
        var query by rememberSaveable { mutableStateOf("") }
        var hits by remember { mutableStateOf<List<ResidentHit>>(emptyList()) }
        var byNumber by remember { mutableStateOf<cn.xiuhua.ffi.NumberHit?>(null) }
        LaunchedEffect(query) {
            delay(250) // debounce typing
            try {
                hits = if (query.isBlank()) emptyList() else state.repo.searchResidents(query)
                // A resident reading out the number on their slip (罗河-2026-000123).
                byNumber = if (query.count { it == '-' } >= 2) state.repo.findByNumber(query) else null
            } catch (e: XiuhuaException) {
                state.snackbar.showSnackbar(e.readableMessage); hits = emptyList(); byNumber = null
            }
        }
        OutlinedTextField(
            value = query,
            onValueChange = { query = it },
            label = { Text(stringResource(R.string.search_hint)) },
            singleLine = true,
            modifier = Modifier.fillMaxWidth().padding(horizontal = 16.dp, vertical = 8.dp),
        )
        if (query.isNotBlank()) {
            byNumber?.let { hit ->
                ListItem(
                    headlineContent = { Text(stringResource(R.string.number_line, hit.number)) },
                    supportingContent = { Text(stringResource(if (hit.kind == "task") R.string.number_kind_task else R.string.number_kind_record)) },
                    modifier = Modifier.clickable {
                        if (hit.kind == "task") nav.navigate(Routes.route(Routes.TASK, "id" to hit.id))
                    },
                )
            }
            LazyColumn {
                items(hits, key = { it.household + it.member }) { h ->
                    ListItem(
                        headlineContent = { Text(h.name) },
                        supportingContent = {
                            Text(listOfNotNull(h.building, h.relation, h.phone, h.idMasked).joinToString(" · "))
                        },
                        modifier = Modifier.clickable { nav.navigate(Routes.route(Routes.HOUSEHOLD, "id" to h.household)) },
                    )
                }
            }
            return
        }
        val buildings = state.collect(state.repo.liveBuildings(grid), emptyList(), grid)
        if (buildings.isEmpty()) Text(stringResource(R.string.grid_empty), Modifier.padding(16.dp))
        LazyColumn {
            items(buildings, key = { it.name }) { b ->
                ListItem(
                    headlineContent = { Text(b.name) },
                    supportingContent = { Text(stringResource(R.string.household_count, b.households)) },
                    modifier = Modifier.clickable { nav.navigate(Routes.route(Routes.UNITS, "building" to b.name)) },
                )
                HorizontalDivider()
            }
        }
    }
}

/** The units (单元) of a building. */
@Composable
fun UnitsScreen(state: AppState, nav: NavHostController, building: String) {
    val grid = state.grid ?: return
    val units = state.collect(state.repo.live(state.repo.changesOfKind("household")) { units(grid, building) }, emptyList(), grid, building)
    Column(Modifier.fillMaxSize()) {
        TopAppBar(title = { Text(building) })
        LazyColumn {
            items(units, key = { it }) { u ->
                ListItem(
                    headlineContent = { Text(u) },
                    modifier = Modifier.clickable { nav.navigate(Routes.route(Routes.HOUSEHOLDS, "building" to building, "unit" to u)) },
                )
                HorizontalDivider()
            }
        }
    }
}

/** The households of one unit, by room. */
@Composable
fun HouseholdsScreen(state: AppState, nav: NavHostController, building: String, unit: String) {
    val grid = state.grid ?: return
    val households = state.collect(state.repo.liveHouseholds(grid, building, unit), emptyList(), grid, building, unit)
    Column(Modifier.fillMaxSize()) {
        TopAppBar(title = { Text("$building $unit") })
        LazyColumn {
            items(households, key = { it.id }) { h ->
                ListItem(
                    headlineContent = { Text("${h.room}  ${h.headName}") },
                    supportingContent = {
                        Text(
                            listOf(
                                stringResource(R.string.member_count, h.memberCount),
                                stringResource(R.string.visit_count, h.visitCount, formatTime(h.lastVisitAt)),
                            ).plus(h.tags).joinToString(" · "),
                        )
                    },
                    trailingContent = { if (h.conflicts > 0) Text(stringResource(R.string.has_conflicts)) },
                    modifier = Modifier.clickable { nav.navigate(Routes.route(Routes.HOUSEHOLD, "id" to h.id)) },
                )
                HorizontalDivider()
            }
        }
    }
}
