// One journey: its stage, steps, crew and entries, and the crew's captures — notes,
// a GPS fix, photos from the camera app, a signature (on its own screen).

package crewsync.demo.app

import android.Manifest
import android.annotation.SuppressLint
import android.content.Context
import android.content.pm.PackageManager
import android.location.LocationManager
import android.os.Build
import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.activity.result.contract.ActivityResultContracts
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.items
import androidx.compose.material3.Button
import androidx.compose.material3.ListItem
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.DisposableEffect
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.rememberCoroutineScope
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.platform.LocalContext
import androidx.compose.ui.unit.dp
import androidx.core.content.ContextCompat
import androidx.core.content.FileProvider
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import crewsync.CrewDevice
import crewsync.CrewsyncException
import crewsync.GpsPoint
import crewsync.Stage
import crewsync.StepStatus
import crewsync.demo.JourneyState
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import java.io.File
import java.util.UUID

@Composable
fun JourneyScreen(device: CrewDevice, journeyId: String, onSign: () -> Unit) {
    val state = remember(device, journeyId) { JourneyState(device, journeyId) }
    DisposableEffect(state) { onDispose { state.close() } }
    val journey by state.journey.collectAsStateWithLifecycle()
    val rejected by state.rejected.collectAsStateWithLifecycle()
    val context = LocalContext.current
    val scope = rememberCoroutineScope()
    var note by remember { mutableStateOf("") }
    var problem by remember { mutableStateOf<String?>(null) }

    /** Crew actions are synchronous SQLite commits: run them off the main thread and
     *  show the refusals an app can explain. */
    fun act(action: suspend () -> Unit) = scope.launch {
        problem = try {
            action()
            null
        } catch (e: CrewsyncException.NotAllowed) {
            "Not allowed: ${e.reason}"
        } catch (e: CrewsyncException.InvalidInput) {
            e.reason
        } catch (e: CrewsyncException.StorageFull) {
            "The phone is full: free some space, nothing was saved"
        }
    }

    // The camera app writes the photo into our cache; we capture it from there.
    var pendingPhoto by remember { mutableStateOf<File?>(null) }
    val takePicture = rememberLauncherForActivityResult(ActivityResultContracts.TakePicture()) { taken ->
        val file = pendingPhoto ?: return@rememberLauncherForActivityResult
        pendingPhoto = null
        if (taken) {
            act {
                state.capturePhoto(file.path, gps = lastFix(context))
                file.delete() // crewsync keeps its own copy
            }
        } else {
            file.delete()
        }
    }

    val current = journey ?: run {
        Text("Loading…", Modifier.padding(16.dp))
        return
    }
    LazyColumn(Modifier.padding(horizontal = 16.dp), verticalArrangement = Arrangement.spacedBy(4.dp)) {
        item {
            Text("Truck ${current.truckNumber ?: "—"} · ${current.date}", style = MaterialTheme.typography.titleLarge)
            Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                Text("Stage: ${current.stage}")
                nextStage(current.stage)?.let { next ->
                    OutlinedButton(onClick = { act { withContext(Dispatchers.IO) { state.advance(next) } } }) {
                        Text("→ $next")
                    }
                }
            }
            problem?.let { Text(it, color = MaterialTheme.colorScheme.error) }
            rejected.forEach { Text("Not accepted by the office: ${it.reason}", color = MaterialTheme.colorScheme.error) }
        }
        item { Text("Steps", style = MaterialTheme.typography.titleMedium) }
        items(current.steps, key = { "step-${it.number}" }) { step ->
            ListItem(
                headlineContent = { Text("${step.number}. ${step.name}") },
                supportingContent = { Text("${step.status} · ${step.activities.size} activities") },
                trailingContent = {
                    when (step.status) {
                        StepStatus.PENDING -> OutlinedButton(onClick = {
                            act { withContext(Dispatchers.IO) { state.startStep(step.number.toInt()) } }
                        }) { Text("Start") }
                        StepStatus.IN_PROGRESS -> OutlinedButton(onClick = {
                            act { withContext(Dispatchers.IO) { state.completeStep(step.number.toInt()) } }
                        }) { Text("Done") }
                        StepStatus.COMPLETED -> Text("✓")
                    }
                },
            )
        }
        item { Text("Crew", style = MaterialTheme.typography.titleMedium) }
        items(current.crew, key = { "crew-${it.userId}" }) { Text("${it.role} · ${it.userId.take(8)}") }
        item {
            Text("Capture", style = MaterialTheme.typography.titleMedium)
            OutlinedTextField(note, { note = it }, label = { Text("Note") }, modifier = Modifier.fillMaxWidth())
            Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                Button(onClick = {
                    val text = note.trim()
                    if (text.isNotEmpty()) act { withContext(Dispatchers.IO) { state.addNote(text) }; note = "" }
                }) { Text("Add note") }
                Button(onClick = {
                    act {
                        val fix = lastFix(context) ?: throw CrewsyncException.InvalidInput("no GPS fix yet")
                        withContext(Dispatchers.IO) { state.recordGps(fix) }
                    }
                }) { Text("GPS") }
                Button(onClick = {
                    val file = File(context.cacheDir, "photos/${UUID.randomUUID()}.jpg").apply { parentFile?.mkdirs() }
                    pendingPhoto = file
                    takePicture.launch(FileProvider.getUriForFile(context, "${context.packageName}.photos", file))
                }) { Text("Photo") }
                Button(onClick = onSign) { Text("Signature") }
            }
        }
        item { Text("Entries", style = MaterialTheme.typography.titleMedium) }
        items(current.entries.asReversed(), key = { "entry-${it.id}" }) { entry ->
            ListItem(
                headlineContent = { Text("${entry.kind}${entry.tag?.let { " [$it]" } ?: ""}") },
                supportingContent = { Text(entry.text ?: entry.mediaId?.let { "media ${it.take(8)}" } ?: "") },
            )
        }
    }
}

private fun nextStage(stage: Stage): Stage? = when (stage) {
    Stage.MORNING_PREP -> Stage.EN_ROUTE
    Stage.EN_ROUTE -> Stage.ONSITE
    Stage.ONSITE -> Stage.COMPLETED
    Stage.COMPLETED, Stage.AUDITED -> null // auditing is the office's
}

/** The platform's last known fix (no Play services needed), if location is granted. */
@SuppressLint("MissingPermission")
private fun lastFix(context: Context): GpsPoint? {
    if (ContextCompat.checkSelfPermission(context, Manifest.permission.ACCESS_FINE_LOCATION) != PackageManager.PERMISSION_GRANTED) {
        return null
    }
    val manager = context.getSystemService(LocationManager::class.java)
    val providers = if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.S) {
        listOf(LocationManager.FUSED_PROVIDER, LocationManager.GPS_PROVIDER, LocationManager.NETWORK_PROVIDER)
    } else {
        listOf(LocationManager.GPS_PROVIDER, LocationManager.NETWORK_PROVIDER)
    }
    val fix = providers.firstNotNullOfOrNull { runCatching { manager.getLastKnownLocation(it) }.getOrNull() } ?: return null
    return GpsPoint(fix.latitude, fix.longitude, if (fix.hasAccuracy()) fix.accuracy else null, fix.time)
}
