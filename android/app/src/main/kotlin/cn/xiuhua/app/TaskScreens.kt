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
import androidx.compose.material3.Checkbox
import androidx.compose.material3.ExperimentalMaterial3Api
import androidx.compose.material3.FilterChip
import androidx.compose.material3.HorizontalDivider
import androidx.compose.material3.ListItem
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Tab
import androidx.compose.material3.TabRow
import androidx.compose.material3.Text
import androidx.compose.material3.TextButton
import androidx.compose.material3.TopAppBar
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.saveable.rememberSaveable
import androidx.compose.runtime.setValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.res.stringResource
import androidx.compose.ui.unit.dp
import androidx.navigation.NavHostController
import cn.xiuhua.XiuhuaRepository
import cn.xiuhua.ffi.EventOutcome
import cn.xiuhua.ffi.TaskAction
import cn.xiuhua.ffi.TaskDetail
import cn.xiuhua.ffi.TaskSummary

/** 代办: mine / overdue / by level. */
@Composable
fun TasksScreen(state: AppState, nav: NavHostController) {
    val grid = state.grid ?: return
    var tab by rememberSaveable { mutableStateOf(0) }
    val levels = XiuhuaRepository.vocabulary.levels
    var level by rememberSaveable { mutableStateOf(levels.first().value) }
    Column(Modifier.fillMaxSize()) {
        TopAppBar(title = { Text(stringResource(R.string.tab_tasks)) })
        TabRow(selectedTabIndex = tab) {
            listOf(R.string.tasks_mine, R.string.tasks_overdue, R.string.tasks_by_level).forEachIndexed { i, label ->
                Tab(selected = tab == i, onClick = { tab = i }, text = { Text(stringResource(label)) })
            }
        }
        val tasks: List<TaskSummary> = when (tab) {
            0 -> state.collect(state.repo.liveMyTasks(state.user), emptyList(), "mine", state.user)
            1 -> state.collect(state.repo.liveOverdue(grid), emptyList(), "overdue", grid)
            else -> {
                LazyRow(Modifier.padding(8.dp), horizontalArrangement = Arrangement.spacedBy(4.dp)) {
                    items(levels, key = { it.value }) { l ->
                        FilterChip(selected = l.value == level, onClick = { level = l.value }, label = { Text(l.label) })
                    }
                }
                state.collect(state.repo.live(state.repo.changesOfKind("task")) { tasks(grid, level, null, 500u) }, emptyList(), "level", grid, level)
            }
        }
        if (tasks.isEmpty()) Text(stringResource(R.string.tasks_none), Modifier.padding(16.dp))
        LazyColumn {
            items(tasks, key = { it.id }) { t ->
                ListItem(
                    headlineContent = { Text(t.title) },
                    overlineContent = { Text(listOfNotNull(t.level, t.category, t.statusLabel).joinToString(" · ")) },
                    supportingContent = {
                        Text(listOfNotNull(t.assignee, t.deadline?.let { stringResource(R.string.deadline, formatTime(it)) }).joinToString(" · "))
                    },
                    trailingContent = { if (t.rejected > 0) Text(stringResource(R.string.has_conflicts)) },
                    modifier = Modifier.clickable { nav.navigate(Routes.route(Routes.TASK, "id" to t.id)) },
                )
                HorizontalDivider()
            }
        }
    }
}

/** What the task detail asks for before recording an action. */
private enum class Ask { ASSIGN, NOTE, SUPERVISE, COMPLETE, INQUIRE, RATE, ESCALATE, CANCEL }

/** A task with its events (rejected ones shown with their reason) and the five-order actions. */
@Composable
fun TaskScreen(state: AppState, id: String) {
    val t: TaskDetail? = state.collect(state.repo.liveTask(id), null, id)
    var ask by remember { mutableStateOf<Ask?>(null) }
    Column(Modifier.fillMaxSize()) {
        TopAppBar(title = { Text(t?.title ?: "") })
        if (t == null) return
        Column(Modifier.padding(horizontal = 16.dp)) {
            Text(listOfNotNull(t.statusLabel, t.level, t.category).joinToString(" · "), style = MaterialTheme.typography.titleMedium)
            t.number?.let { Text(stringResource(R.string.number_line, it)) }
            Text(stringResource(R.string.task_assignee, t.assignee ?: "—"))
            Text(stringResource(R.string.deadline, formatTime(t.deadline)) + if (t.overdue) " " + stringResource(R.string.overdue) else "")
            if (t.tier != "grid") Text(stringResource(R.string.task_tier, t.tier, t.linkedUnit ?: ""))
            t.lastRating?.let { Text(stringResource(R.string.task_rating, it.score, it.comment)) }
            if (t.description.isNotBlank()) Text(t.description, Modifier.padding(vertical = 8.dp))
        }
        // The actions that can apply in this status; the core still decides (a refusal shows its reason).
        val actions: List<Pair<Int, () -> Unit>> = when (t.status) {
            "ordered", "assigned" -> listOf(
                R.string.act_assign to { ask = Ask.ASSIGN },
                R.string.act_accept to { state.act { state.repo.accept(id) } },
                R.string.act_supervise to { ask = Ask.SUPERVISE },
                R.string.act_escalate to { ask = Ask.ESCALATE },
                R.string.act_cancel to { ask = Ask.CANCEL },
            )
            "in_progress" -> listOf(
                R.string.act_complete to { ask = Ask.COMPLETE },
                R.string.act_note to { ask = Ask.NOTE },
                R.string.act_supervise to { ask = Ask.SUPERVISE },
                R.string.act_escalate to { ask = Ask.ESCALATE },
            )
            "done" -> listOf(
                R.string.act_rate to { ask = Ask.RATE },
                R.string.act_inquire to { ask = Ask.INQUIRE },
                R.string.act_supervise to { ask = Ask.SUPERVISE },
            )
            "closed" -> listOf(R.string.act_inquire to { ask = Ask.INQUIRE }, R.string.act_note to { ask = Ask.NOTE })
            else -> listOf(R.string.act_note to { ask = Ask.NOTE })
        }
        LazyRow(Modifier.padding(8.dp), horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            items(actions) { (label, onClick) -> OutlinedButton(onClick = onClick) { Text(stringResource(label)) } }
        }
        LazyColumn {
            items(t.events, key = { it.id }) { e ->
                val outcome = e.outcome
                ListItem(
                    overlineContent = { Text("${formatTime(e.at)} · ${e.authorName}（${e.role}）") },
                    headlineContent = { Text(eventLabel(e.kind) + (e.assignee?.let { " → $it" } ?: "") + (e.score?.let { " $it★" } ?: "")) },
                    supportingContent = {
                        val why = when (outcome) {
                            is EventOutcome.Rejected -> stringResource(R.string.event_rejected, outcome.reason)
                            is EventOutcome.Held -> stringResource(R.string.event_held, outcome.reason)
                            EventOutcome.Applied -> null
                        }
                        Text(listOfNotNull(e.text.ifBlank { null }, why).joinToString("\n"),
                            color = if (why != null) MaterialTheme.colorScheme.error else MaterialTheme.colorScheme.onSurface)
                    },
                )
            }
        }
    }
    ask?.let { a ->
        ActionDialog(a, onDismiss = { ask = null }) { text, flag, score ->
            val action = when (a) {
                Ask.ASSIGN -> TaskAction.Assign(text)
                Ask.NOTE -> TaskAction.Note(text)
                Ask.SUPERVISE -> TaskAction.Supervise(text, null)
                Ask.COMPLETE -> TaskAction.Complete(text)
                Ask.INQUIRE -> TaskAction.Inquire(text, flag)
                Ask.RATE -> TaskAction.Rate(score, text)
                Ask.ESCALATE -> TaskAction.Escalate(if (flag) "linked_unit" else "community", text.ifBlank { null })
                Ask.CANCEL -> TaskAction.Cancel(text)
            }
            state.act(onDone = { ask = null }) { state.repo.taskAction(id, action) }
        }
    }
}

@Composable
private fun eventLabel(kind: String): String = stringResource(
    when (kind) {
        "order" -> R.string.ev_order
        "assign" -> R.string.ev_assign
        "accept" -> R.string.ev_accept
        "note" -> R.string.ev_note
        "supervise" -> R.string.ev_supervise
        "complete" -> R.string.ev_complete
        "inquire" -> R.string.ev_inquire
        "rate" -> R.string.ev_rate
        "escalate" -> R.string.ev_escalate
        "cancel" -> R.string.ev_cancel
        else -> R.string.ev_change
    },
)

@Composable
private fun ActionDialog(ask: Ask, onDismiss: () -> Unit, onSave: (text: String, flag: Boolean, score: Int) -> Unit) {
    var text by remember { mutableStateOf("") }
    var flag by remember { mutableStateOf(false) }
    var score by remember { mutableStateOf(5) }
    val (title, field) = when (ask) {
        Ask.ASSIGN -> R.string.act_assign to R.string.field_assignee
        Ask.NOTE -> R.string.act_note to R.string.field_text
        Ask.SUPERVISE -> R.string.act_supervise to R.string.field_text
        Ask.COMPLETE -> R.string.act_complete to R.string.field_result
        Ask.INQUIRE -> R.string.act_inquire to R.string.field_text
        Ask.RATE -> R.string.act_rate to R.string.field_comment
        Ask.ESCALATE -> R.string.act_escalate to R.string.field_unit
        Ask.CANCEL -> R.string.act_cancel to R.string.field_reason
    }
    AlertDialog(
        onDismissRequest = onDismiss,
        title = { Text(stringResource(title)) },
        text = {
            Column(verticalArrangement = Arrangement.spacedBy(8.dp)) {
                if (ask == Ask.RATE) {
                    Row { (1..5).forEach { s -> TextButton(onClick = { score = s }) { Text(if (s <= score) "★" else "☆") } } }
                }
                OutlinedTextField(text, { text = it }, label = { Text(stringResource(field)) })
                if (ask == Ask.INQUIRE || ask == Ask.ESCALATE) {
                    Row(verticalAlignment = Alignment.CenterVertically) {
                        Checkbox(checked = flag, onCheckedChange = { flag = it })
                        Text(stringResource(if (ask == Ask.INQUIRE) R.string.field_send_back else R.string.field_to_linked_unit))
                    }
                }
            }
        },
        confirmButton = { TextButton(onClick = { onSave(text, flag, score) }) { Text(stringResource(R.string.save)) } },
        dismissButton = { TextButton(onClick = onDismiss) { Text(stringResource(R.string.cancel)) } },
    )
}
