// The crew app's state holders: plain Kotlin over the generated bindings, no Android
// dependency, so the JVM test (bindings/tests/kotlin) compiles and drives them here.
// Compose screens collect these StateFlows; actions run on Dispatchers.IO, since every
// crew action is a synchronous SQLite commit.

package crewsync.demo

import crewsync.CrewDevice
import crewsync.Journey
import crewsync.JourneyObserver
import crewsync.JourneySummary
import crewsync.ObserverHandle
import crewsync.RejectedChange
import crewsync.SyncStatus
import crewsync.SyncStatusObserver
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow

/** The sync line every screen shows, e.g. "12 pending" or "synced". */
fun syncLine(status: SyncStatus?): String = when {
    status == null -> "starting"
    status.paused -> "paused (offline)"
    status.syncing -> "syncing, ${status.pendingChanges} pending"
    status.lastError != null && status.pendingChanges > 0uL -> "offline, ${status.pendingChanges} pending"
    status.pendingChanges > 0uL -> "${status.pendingChanges} pending"
    status.lastSuccessMs != null -> "synced"
    else -> "not synced yet"
    // MEDIA: ", 3 photos uploading" joins this line when upload progress is observable.
}

/** Today's journeys at a location and the sync status; refreshed after each sync. */
class TodayState(private val device: CrewDevice, private val locationId: String) : AutoCloseable {
    private val _status = MutableStateFlow<SyncStatus?>(null)
    val status: StateFlow<SyncStatus?> = _status.asStateFlow()
    private val _journeys = MutableStateFlow<List<JourneySummary>>(emptyList())
    val journeys: StateFlow<List<JourneySummary>> = _journeys.asStateFlow()
    val line: String get() = syncLine(_status.value)

    private val handle: ObserverHandle = device.observeSyncStatus(object : SyncStatusObserver {
        override fun onStatus(status: SyncStatus) {
            _status.value = status
            if (!status.syncing) refresh()
        }
    })

    /** Re-reads the list (cheap: the summary table, no documents). */
    fun refresh() {
        _journeys.value = runCatching { device.listJourneysToday(locationId) }.getOrDefault(_journeys.value)
    }

    override fun close() = handle.close()
}

/** One journey's screen: the journey, its refused changes, and the crew's actions. */
class JourneyState(private val device: CrewDevice, val journeyId: String) : AutoCloseable {
    private val _journey = MutableStateFlow<Journey?>(null)
    val journey: StateFlow<Journey?> = _journey.asStateFlow()
    private val _rejected = MutableStateFlow<List<RejectedChange>>(emptyList())
    val rejected: StateFlow<List<RejectedChange>> = _rejected.asStateFlow()

    private val handle: ObserverHandle = device.observeJourney(journeyId, object : JourneyObserver {
        override fun onJourney(journey: Journey, rejected: List<RejectedChange>) {
            _journey.value = journey
            _rejected.value = rejected
        }
    })

    fun addNote(text: String) = device.addNote(journeyId, text)

    fun advance(to: crewsync.Stage) = device.advanceStage(journeyId, to)

    fun startStep(step: Int) = device.startStep(journeyId, step.toUByte())

    fun completeStep(step: Int) = device.completeStep(journeyId, step.toUByte())

    fun recordGps(point: crewsync.GpsPoint) = device.recordGpsPoint(journeyId, point)

    // MEDIA: capturePhoto / captureSignature (camera, drawing pad) call the media API here.

    override fun close() = handle.close()
}
