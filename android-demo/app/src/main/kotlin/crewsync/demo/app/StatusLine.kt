// "12 pending, 3 photos uploading": the sync status and the upload queue, from the
// shared UploadsState (the JVM test checks the wording).

package crewsync.demo.app

import androidx.compose.foundation.background
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.DisposableEffect
import androidx.compose.runtime.getValue
import androidx.compose.runtime.remember
import androidx.compose.ui.Modifier
import androidx.compose.ui.unit.dp
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import crewsync.CrewDevice
import crewsync.demo.UploadsState
import crewsync.demo.statusLine

@Composable
fun StatusLine(device: CrewDevice) {
    val state = remember(device) { UploadsState(device) }
    DisposableEffect(state) { onDispose { state.close() } }
    val status by state.status.collectAsStateWithLifecycle()
    val progress by state.progress.collectAsStateWithLifecycle()
    Text(
        statusLine(status, progress),
        style = MaterialTheme.typography.labelLarge,
        modifier = Modifier
            .fillMaxWidth()
            .background(MaterialTheme.colorScheme.secondaryContainer)
            .padding(horizontal = 16.dp, vertical = 6.dp),
    )
}
