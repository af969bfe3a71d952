package cn.xiuhua.app

import android.os.Bundle
import androidx.activity.ComponentActivity
import androidx.activity.compose.setContent
import androidx.compose.foundation.layout.Box
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.padding
import androidx.compose.material.icons.Icons
import androidx.compose.material.icons.filled.DateRange
import androidx.compose.material.icons.filled.Edit
import androidx.compose.material.icons.filled.Home
import androidx.compose.material.icons.filled.List
import androidx.compose.material.icons.filled.Refresh
import androidx.compose.material.icons.filled.Warning
import androidx.compose.material3.CircularProgressIndicator
import androidx.compose.material3.Icon
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.NavigationBar
import androidx.compose.material3.NavigationBarItem
import androidx.compose.material3.Scaffold
import androidx.compose.material3.SnackbarHost
import androidx.compose.material3.SnackbarHostState
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.LaunchedEffect
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.rememberCoroutineScope
import androidx.compose.runtime.setValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.res.stringResource
import androidx.navigation.NavHostController
import androidx.navigation.compose.NavHost
import androidx.navigation.compose.composable
import androidx.navigation.compose.currentBackStackEntryAsState
import androidx.navigation.compose.rememberNavController
import cn.xiuhua.XiuhuaRepository

class MainActivity : ComponentActivity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val app = application as XiuhuaApplication
        setContent {
            MaterialTheme {
                var repo by remember { mutableStateOf<XiuhuaRepository?>(null) }
                LaunchedEffect(Unit) { repo = app.repository() }
                val r = repo
                if (r == null) {
                    Box(Modifier.fillMaxSize(), contentAlignment = Alignment.Center) { CircularProgressIndicator() }
                } else {
                    XiuhuaApp(r)
                }
            }
        }
    }
}

/** Routes. Arguments are document ids and names, URL-encoded by [route]. */
object Routes {
    const val HOME = "home"
    const val RECORDS = "records"
    const val RECORD = "record/{id}"
    const val NEW_HOUSEHOLD = "household/new"
    const val GRID = "grid"
    const val UNITS = "units/{building}"
    const val HOUSEHOLDS = "households/{building}/{unit}"
    const val HOUSEHOLD = "household/{id}"
    const val NEW_RECORD = "record/new?household={household}&building={building}"
    const val TASKS = "tasks"
    const val TASK = "task/{id}"
    const val CONFLICTS = "conflicts"
    const val SYNC = "sync"

    fun route(pattern: String, vararg args: Pair<String, String?>): String =
        args.fold(pattern) { acc, (k, v) -> acc.replace("{$k}", java.net.URLEncoder.encode(v ?: "", "UTF-8")) }
}

@Composable
fun XiuhuaApp(repo: XiuhuaRepository) {
    val scope = rememberCoroutineScope()
    val snackbar = remember { SnackbarHostState() }
    val state = remember { AppState(repo, scope, snackbar) }
    LaunchedEffect(Unit) { state.refreshIdentity() }
    val nav = rememberNavController()
    Scaffold(
        snackbarHost = { SnackbarHost(snackbar) },
        bottomBar = { BottomBar(nav) },
    ) { padding ->
        NavHost(nav, startDestination = Routes.HOME, modifier = Modifier.padding(padding)) {
            composable(Routes.HOME) { HomeScreen(state, nav) }
            composable(Routes.RECORDS) { RecordsScreen(state, nav) }
            composable(Routes.RECORD) { e -> RecordDetailScreen(state, nav, e.arg("id")) }
            composable(Routes.NEW_HOUSEHOLD) { NewHouseholdScreen(state, nav) }
            composable(Routes.GRID) { GridScreen(state, nav) }
            composable(Routes.UNITS) { e -> UnitsScreen(state, nav, e.arg("building")) }
            composable(Routes.HOUSEHOLDS) { e -> HouseholdsScreen(state, nav, e.arg("building"), e.arg("unit")) }
            composable(Routes.HOUSEHOLD) { e -> HouseholdScreen(state, nav, e.arg("id")) }
            composable(Routes.NEW_RECORD) { e ->
                NewRecordScreen(state, nav, e.arg("household").ifEmpty { null }, e.arg("building").ifEmpty { null })
            }
            composable(Routes.TASKS) { TasksScreen(state, nav) }
            composable(Routes.TASK) { e -> TaskScreen(state, e.arg("id")) }
            composable(Routes.CONFLICTS) { ConflictsScreen(state, nav) }
            composable(Routes.SYNC) { SyncScreen(state) }
        }
    }
}

private fun androidx.navigation.NavBackStackEntry.arg(name: String): String =
    java.net.URLDecoder.decode(arguments?.getString(name) ?: "", "UTF-8")

@Composable
private fun BottomBar(nav: NavHostController) {
    val current = nav.currentBackStackEntryAsState().value?.destination?.route
    val items = listOf(
        Triple(Routes.HOME, R.string.tab_home, Icons.Filled.DateRange),
        Triple(Routes.GRID, R.string.tab_grid, Icons.Filled.Home),
        Triple(Routes.RECORDS, R.string.tab_records, Icons.Filled.Edit),
        Triple(Routes.TASKS, R.string.tab_tasks, Icons.Filled.List),
        Triple(Routes.CONFLICTS, R.string.tab_conflicts, Icons.Filled.Warning),
        Triple(Routes.SYNC, R.string.tab_sync, Icons.Filled.Refresh),
    )
    NavigationBar {
        for ((route, label, icon) in items) {
            NavigationBarItem(
                selected = current == route,
                onClick = {
                    nav.navigate(route) {
                        popUpTo(Routes.HOME) { saveState = true }
                        launchSingleTop = true
                        restoreState = true
                    }
                },
                icon = { Icon(icon, contentDescription = null) },
                label = { Text(stringResource(label)) },
            )
        }
    }
}
