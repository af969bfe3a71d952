@file:OptIn(ExperimentalMaterial3Api::class)

package cn.xiuhua.app

import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.lazy.LazyRow
import androidx.compose.foundation.lazy.items
import androidx.compose.foundation.rememberScrollState
import androidx.compose.foundation.verticalScroll
import androidx.compose.material3.Button
import androidx.compose.material3.ExperimentalMaterial3Api
import androidx.compose.material3.FilterChip
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Text
import androidx.compose.material3.TopAppBar
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.saveable.rememberSaveable
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.res.stringResource
import androidx.compose.ui.unit.dp
import androidx.navigation.NavHostController
import cn.xiuhua.XiuhuaRepository
import cn.xiuhua.ffi.NewRecord

/**
 * A new 民情 record. Saved in the phone's store at once (no network needed); it reaches the
 * server at the next sync.
 */
@Composable
fun NewRecordScreen(state: AppState, nav: NavHostController, household: String?, building: String?) {
    val grid = state.grid ?: return
    val categories = XiuhuaRepository.vocabulary.categories
    var category by rememberSaveable { mutableStateOf(categories.first().value) }
    var description by rememberSaveable { mutableStateOf("") }
    var reporter by rememberSaveable { mutableStateOf("") }
    var place by rememberSaveable { mutableStateOf(building ?: "") }
    Column(Modifier.verticalScroll(rememberScrollState())) {
        TopAppBar(title = { Text(stringResource(R.string.new_record)) })
        Column(Modifier.padding(16.dp), verticalArrangement = Arrangement.spacedBy(8.dp)) {
            Text(stringResource(R.string.record_category))
            LazyRow(horizontalArrangement = Arrangement.spacedBy(4.dp)) {
                items(categories, key = { it.value }) { c ->
                    FilterChip(selected = c.value == category, onClick = { category = c.value }, label = { Text(c.label) })
                }
            }
            OutlinedTextField(description, { description = it }, label = { Text(stringResource(R.string.record_description)) },
                minLines = 4, modifier = Modifier.fillMaxWidth())
            OutlinedTextField(reporter, { reporter = it }, label = { Text(stringResource(R.string.record_reporter)) },
                modifier = Modifier.fillMaxWidth())
            OutlinedTextField(place, { place = it }, label = { Text(stringResource(R.string.record_place)) },
                modifier = Modifier.fillMaxWidth())
            Text(stringResource(R.string.record_offline_hint))
            val savedAs = stringResource(R.string.record_saved_number)
            Button(onClick = {
                state.act(onDone = { nav.popBackStack() }) {
                    val id = state.repo.createRecord(NewRecord(grid, category, description, reporter, household, building, place))
                    // The number to give the resident, even offline (a provisional one, 临, is
                    // replaced at the next sync and still finds the record).
                    state.repo.record(id).number?.let { state.tell(String.format(savedAs, it)) }
                }
            }) { Text(stringResource(R.string.save)) }
        }
    }
}
