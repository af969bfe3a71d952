@file:OptIn(ExperimentalMaterial3Api::class)

package cn.xiuhua.app

import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.rememberScrollState
import androidx.compose.foundation.verticalScroll
import androidx.compose.material3.Button
import androidx.compose.material3.ExperimentalMaterial3Api
import androidx.compose.material3.LinearProgressIndicator
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Text
import androidx.compose.material3.TopAppBar
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.saveable.rememberSaveable
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.res.stringResource
import androidx.compose.ui.unit.dp
import cn.xiuhua.ffi.SyncPhase
import cn.xiuhua.ffi.SyncReport
import cn.xiuhua.ffi.SyncStatus

/**
 * Sync at the station, with an honest status: pending changes, the last sync that finished,
 * the last error. "Synced" is shown only for a sync that finished.
 */
@Composable
fun SyncScreen(state: AppState) {
    var progress by remember { mutableStateOf<Triple<SyncPhase, Long, Long?>?>(null) }
    var report by remember { mutableStateOf<SyncReport?>(null) }
    var refresh by remember { mutableStateOf(0) }
    // The status changes without a document changing (a failed sync): re-read it after each try.
    val current: SyncStatus? = state.collect(state.repo.liveSyncStatus(), null, "status", refresh)
    Column(Modifier.verticalScroll(rememberScrollState())) {
        TopAppBar(title = { Text(stringResource(R.string.tab_sync)) })
        Column(Modifier.padding(16.dp), verticalArrangement = Arrangement.spacedBy(8.dp)) {
            val s = current ?: return@Column
            if (!s.enrolled) {
                EnrollForm(state) { refresh++ }
                return@Column
            }
            Text(stringResource(R.string.sync_server, s.serverUrl ?: ""))
            Text(stringResource(R.string.sync_pending, s.pendingChanges))
            Text(stringResource(R.string.sync_last_success, s.lastSuccessMs?.let(::formatTime) ?: stringResource(R.string.sync_never)))
            if (s.lastSuccessMs == null) FirstSyncEstimate(state)
            s.lastError?.let {
                Text(stringResource(R.string.sync_last_error, formatTime(s.lastErrorMs), it), color = MaterialTheme.colorScheme.error)
            }
            for (r in s.refused) Text(stringResource(R.string.sync_refused, r.doc, r.reason), color = MaterialTheme.colorScheme.error)
            val p = progress
            if (p != null || s.running) {
                Text(p?.let { stringResource(R.string.sync_progress, phaseLabel(it.first), it.second, it.third?.toString() ?: "?") }
                    ?: stringResource(R.string.sync_running))
                LinearProgressIndicator(Modifier.fillMaxWidth())
            }
            Button(enabled = p == null && !s.running, onClick = {
                progress = Triple(SyncPhase.AUTHENTICATE, 0L, null)
                state.act(onDone = { progress = null; refresh++ }) {
                    try {
                        report = state.repo.sync { phase, done, total -> progress = Triple(phase, done, total) }
                        state.refreshIdentity()
                    } finally {
                        progress = null
                        refresh++
                    }
                }
            }) { Text(stringResource(R.string.sync_now)) }
            report?.let { r ->
                Text(stringResource(R.string.sync_report, r.pushed.toLong(), r.pulled.toLong(), r.conflicts.toLong(), r.rejected.size))
            }
        }
    }
}

@Composable
private fun phaseLabel(p: SyncPhase): String = stringResource(
    when (p) {
        SyncPhase.AUTHENTICATE -> R.string.phase_auth
        SyncPhase.PUSH -> R.string.phase_push
        SyncPhase.ESCALATE -> R.string.phase_escalate
        SyncPhase.BOOTSTRAP -> R.string.phase_bootstrap
        SyncPhase.PULL -> R.string.phase_pull
        SyncPhase.DONE -> R.string.phase_done
    },
)

/** First start: the worker types the station's address and the one-time code. */
@Composable
private fun EnrollForm(state: AppState, onEnrolled: () -> Unit) {
    var url by rememberSaveable { mutableStateOf("https://") }
    var code by rememberSaveable { mutableStateOf("") }
    var name by rememberSaveable { mutableStateOf(android.os.Build.MODEL ?: "") }
    Text(stringResource(R.string.enroll_intro))
    OutlinedTextField(url, { url = it }, label = { Text(stringResource(R.string.enroll_url)) }, singleLine = true, modifier = Modifier.fillMaxWidth())
    OutlinedTextField(code, { code = it }, label = { Text(stringResource(R.string.enroll_code)) }, singleLine = true, modifier = Modifier.fillMaxWidth())
    OutlinedTextField(name, { name = it }, label = { Text(stringResource(R.string.enroll_device)) }, singleLine = true, modifier = Modifier.fillMaxWidth())
    Button(onClick = {
        state.act(onDone = onEnrolled) {
            state.repo.enroll(url, code, name)
            state.refreshIdentity()
        }
    }) { Text(stringResource(R.string.enroll_button)) }
}
