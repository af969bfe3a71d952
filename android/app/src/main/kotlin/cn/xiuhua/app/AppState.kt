package cn.xiuhua.app

import androidx.compose.material3.SnackbarHostState
import androidx.compose.runtime.Composable
import androidx.compose.runtime.collectAsState
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import cn.xiuhua.XiuhuaRepository
import cn.xiuhua.ffi.XiuhuaException
import cn.xiuhua.readableMessage
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.catch
import kotlinx.coroutines.launch
import java.time.Instant
import java.time.ZoneId
import java.time.format.DateTimeFormatter

/** What every screen shares: the repository, the current grid and a place for errors. */
class AppState(
    val repo: XiuhuaRepository,
    private val scope: CoroutineScope,
    val snackbar: SnackbarHostState,
) {
    /** The grid the worker looks at (the first granted grid once enrolled). */
    var grid by mutableStateOf<String?>(null)
    var user by mutableStateOf("")

    /** Runs a write; a refused one shows the core's readable message. */
    fun act(onDone: () -> Unit = {}, block: suspend () -> Unit) {
        scope.launch {
            try {
                block()
                onDone()
            } catch (e: XiuhuaException) {
                snackbar.showSnackbar(e.readableMessage)
            }
        }
    }

    /** Shows a message without holding up the caller (a saved record's number). */
    fun tell(message: String) {
        scope.launch { snackbar.showSnackbar(message) }
    }

    suspend fun refreshIdentity() {
        user = repo.store.actor().user
        grid = grid ?: repo.grids().firstOrNull()
    }

    /** Collects a live query as state; an error shows once and keeps the last value. */
    @Composable
    fun <T> collect(flow: Flow<T>, initial: T, vararg keys: Any?): T {
        val f = remember(*keys) {
            flow.catch { e ->
                if (e is XiuhuaException) snackbar.showSnackbar(e.readableMessage) else throw e
            }
        }
        val v by f.collectAsState(initial)
        return v
    }
}

private val timeFormat = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm")

fun formatTime(ms: Long?): String =
    ms?.let { timeFormat.format(Instant.ofEpochMilli(it).atZone(ZoneId.systemDefault())) } ?: "—"

/** `110***********1234`: ID numbers are shown masked unless the worker asks. */
fun maskId(id: String?): String? =
    id?.let { if (it.length > 7) it.take(3) + "*".repeat(it.length - 7) + it.takeLast(4) else "****" }
