@file:OptIn(ExperimentalMaterial3Api::class)

package cn.xiuhua.app

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
        LazyColumn(Modifier.padding(horizontal = 8.dp)) {
            item { Section(stringResource(R.string.members)) }
            items(h.members, key = { it.id }) { m ->
                ListItem(
                    headlineContent = { Text("${m.name}（${m.relation}）") },
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
