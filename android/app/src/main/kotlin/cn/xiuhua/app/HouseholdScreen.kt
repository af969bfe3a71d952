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
import androidx.compose.material3.AlertDialog
import androidx.compose.material3.AssistChip
import androidx.compose.material3.Button
import androidx.compose.material3.ExperimentalMaterial3Api
import androidx.compose.material3.ListItem
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Text
import androidx.compose.material3.TextButton
import androidx.compose.material3.TopAppBar
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.res.stringResource
import androidx.compose.ui.unit.dp
import androidx.navigation.NavHostController
import cn.xiuhua.ffi.Household

/** A household: members, tags, note, visits; add a visit; log a 民情 record about it. */
@Composable
fun HouseholdScreen(state: AppState, nav: NavHostController, id: String) {
    val h: Household? = state.collect(state.repo.liveHousehold(id), null, id)
    var addingVisit by remember { mutableStateOf(false) }
    var showIds by remember { mutableStateOf(false) }
    var editing by remember { mutableStateOf<cn.xiuhua.ffi.Member?>(null) }
    var correcting by remember { mutableStateOf(false) }
    Column(Modifier.fillMaxSize()) {
        TopAppBar(title = { Text(h?.let { "${it.address.building} ${it.address.unit} ${it.address.room}" } ?: "") })
        if (h == null) return
        Row(Modifier.padding(horizontal = 16.dp), horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            Button(onClick = { addingVisit = true }) { Text(stringResource(R.string.add_visit)) }
            OutlinedButton(onClick = {
                nav.navigate(Routes.route(Routes.NEW_RECORD, "household" to h.id, "building" to h.address.building))
            }) { Text(stringResource(R.string.new_record)) }
            TextButton(onClick = { showIds = !showIds }) {
                Text(stringResource(if (showIds) R.string.hide_ids else R.string.show_ids))
            }
        }
        Row(Modifier.padding(horizontal = 16.dp), horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            TextButton(onClick = { correcting = true }) { Text(stringResource(R.string.correct_address)) }
            TextButton(onClick = { state.act { state.repo.setHouseholdMovedOut(id, h.movedOutAt == null) } }) {
                Text(stringResource(if (h.movedOutAt == null) R.string.mark_moved_out else R.string.mark_back))
            }
        }
        LazyColumn(Modifier.padding(horizontal = 8.dp)) {
            item { Section(stringResource(R.string.members)) }
            items(h.members, key = { it.id }) { m ->
                ListItem(
                    modifier = Modifier.clickable { editing = m },
                    headlineContent = { Text("${m.name}（${m.relation}）" + (if (m.status != "在册") " · ${m.status}" else "")) },
                    supportingContent = {
                        Text(
                            listOfNotNull(
                                m.gender,
                                stringResource(R.string.born, m.birthYear),
                                m.phone,
                                if (showIds) m.idNumber else maskId(m.idNumber),
                            ).plus(m.tags).joinToString(" · "),
                        )
                    },
                )
            }
            if (h.tags.isNotEmpty()) {
                item { Section(stringResource(R.string.tags)) }
                item { Row(horizontalArrangement = Arrangement.spacedBy(4.dp)) { h.tags.forEach { AssistChip(onClick = {}, label = { Text(it) }) } } }
            }
            if (h.note.isNotBlank()) {
                item { Section(stringResource(R.string.note)) }
                item { Text(h.note, Modifier.padding(8.dp)) }
            }
            item { Section(stringResource(R.string.visits)) }
            if (h.visits.isEmpty()) item { Text(stringResource(R.string.no_visits), Modifier.padding(8.dp)) }
            items(h.visits.reversed(), key = { it.id }) { v ->
                ListItem(
                    headlineContent = { Text(v.purpose) },
                    overlineContent = { Text("${formatTime(v.at)} · ${v.byName}") },
                    supportingContent = {
                        Text(listOfNotNull(v.note.ifBlank { null }, v.followUp?.let { stringResource(R.string.follow_up, it) }).joinToString("\n"))
                    },
                )
            }
        }
    }
    editing?.let { m ->
        MemberDialog(m, onDismiss = { editing = null }) { phone, status ->
            state.act(onDone = { editing = null }) {
                if (phone != (m.phone ?: "")) state.repo.setMemberPhone(id, m.id, phone.ifBlank { null })
                if (status != null) state.repo.setMemberStatus(id, m.id, status)
            }
        }
    }
    if (correcting && h != null) {
        AddressDialog(h.address, onDismiss = { correcting = false }) { b, u, r ->
            state.act(onDone = { correcting = false }) { state.repo.moveHousehold(id, b, u, r) }
        }
    }
    if (addingVisit) {
        VisitDialog(
            onDismiss = { addingVisit = false },
            onSave = { purpose, note, followUp ->
                state.act(onDone = { addingVisit = false }) {
                    state.repo.addVisit(id, purpose, note, followUp.ifBlank { null })
                }
            },
        )
    }
}

@Composable
fun Section(title: String) {
    Text(title, style = MaterialTheme.typography.titleMedium, modifier = Modifier.padding(start = 8.dp, top = 16.dp, bottom = 4.dp))
}

@Composable
private fun VisitDialog(onDismiss: () -> Unit, onSave: (String, String, String) -> Unit) {
    var purpose by remember { mutableStateOf("") }
    var note by remember { mutableStateOf("") }
    var followUp by remember { mutableStateOf("") }
    AlertDialog(
        onDismissRequest = onDismiss,
        title = { Text(stringResource(R.string.add_visit)) },
        text = {
            Column(verticalArrangement = Arrangement.spacedBy(8.dp)) {
                OutlinedTextField(purpose, { purpose = it }, label = { Text(stringResource(R.string.visit_purpose)) })
                OutlinedTextField(note, { note = it }, label = { Text(stringResource(R.string.visit_note)) }, minLines = 3)
                OutlinedTextField(followUp, { followUp = it }, label = { Text(stringResource(R.string.visit_follow_up)) })
            }
        },
        confirmButton = { TextButton(onClick = { onSave(purpose, note, followUp) }) { Text(stringResource(R.string.save)) } },
        dismissButton = { TextButton(onClick = onDismiss) { Text(stringResource(R.string.cancel)) } },
    )
}

/** A member's phone (validated by the core), and their status: moved out or deceased. */
@Composable
private fun MemberDialog(m: cn.xiuhua.ffi.Member, onDismiss: () -> Unit, onSave: (String, String?) -> Unit) {
    var phone by remember { mutableStateOf(m.phone ?: "") }
    var status by remember { mutableStateOf<String?>(null) }
    AlertDialog(
        onDismissRequest = onDismiss,
        title = { Text(m.name) },
        text = {
            Column(verticalArrangement = Arrangement.spacedBy(8.dp)) {
                OutlinedTextField(phone, { phone = it }, label = { Text(stringResource(R.string.member_phone)) })
                Row(horizontalArrangement = Arrangement.spacedBy(4.dp)) {
                    for (s in listOf("在册", "迁出", "去世").filter { it != m.status }) {
                        androidx.compose.material3.FilterChip(selected = status == s, onClick = { status = if (status == s) null else s }, label = { Text(s) })
                    }
                }
            }
        },
        confirmButton = { TextButton(onClick = { onSave(phone, status) }) { Text(stringResource(R.string.save)) } },
        dismissButton = { TextButton(onClick = onDismiss) { Text(stringResource(R.string.cancel)) } },
    )
}

/** A wrong building, unit or room corrected (or a move within the grid). */
@Composable
private fun AddressDialog(a: cn.xiuhua.ffi.Address, onDismiss: () -> Unit, onSave: (String, String, String) -> Unit) {
    var building by remember { mutableStateOf(a.building) }
    var unit by remember { mutableStateOf(a.unit) }
    var room by remember { mutableStateOf(a.room) }
    AlertDialog(
        onDismissRequest = onDismiss,
        title = { Text(stringResource(R.string.correct_address)) },
        text = {
            Column(verticalArrangement = Arrangement.spacedBy(8.dp)) {
                OutlinedTextField(building, { building = it }, label = { Text(stringResource(R.string.address_building)) })
                OutlinedTextField(unit, { unit = it }, label = { Text(stringResource(R.string.address_unit)) })
                OutlinedTextField(room, { room = it }, label = { Text(stringResource(R.string.address_room)) })
            }
        },
        confirmButton = { TextButton(onClick = { onSave(building, unit, room) }) { Text(stringResource(R.string.save)) } },
        dismissButton = { TextButton(onClick = onDismiss) { Text(stringResource(R.string.cancel)) } },
    )
}
