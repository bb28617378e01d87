// The crew app's state holders: plain Kotlin over the generated bindings, no Android
// dependency, so the JVM test (bindings/tests/kotlin) compiles and drives them here.
// Compose screens collect these StateFlows; actions run on Dispatchers.IO, since every
// crew action is a synchronous SQLite commit (captures are suspend functions: the
// library does their decoding and fsyncs on its own threads).

package crewsync.demo

import crewsync.CaptureInfo
import crewsync.CrewDevice
import crewsync.GpsPoint
import crewsync.Journey
import crewsync.JourneyObserver
import crewsync.JourneySummary
import crewsync.MediaRef
import crewsync.ObserverHandle
import crewsync.RejectedChange
import crewsync.SignatureCapture
import crewsync.SignatureRefusal
import crewsync.SignerRole
import crewsync.Stage
import crewsync.SyncStatus
import crewsync.SyncStatusObserver
import crewsync.UploadKind
import crewsync.UploadProgress
import crewsync.UploadProgressObserver
import crewsync.UploadState
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow

/** The sync half of the status line, e.g. "12 pending" or "synced". */
fun syncLine(status: SyncStatus?): String = when {
    status == null -> "starting"
    status.paused -> "paused (offline)"
    status.syncing -> "syncing, ${status.pendingChanges} pending"
    status.lastError != null && status.pendingChanges > 0uL -> "offline, ${status.pendingChanges} pending"
    status.pendingChanges > 0uL -> "${status.pendingChanges} pending"
    status.lastSuccessMs != null -> "synced"
    else -> "not synced yet"
}

private fun plural(n: Int, one: String) = if (n == 1) "1 $one" else "$n ${one}s"

/**
 * The upload half, e.g. "3 photos uploading, 1 signature uploading" or "" when the
 * queue is empty. A photo counts once (its thumbnail is a second item of the same
 * media). Set-aside items are called out: they need someone to look.
 */
fun uploadLine(progress: UploadProgress?): String {
    if (progress == null) return ""
    val pending = progress.items.filter { it.state == UploadState.PENDING }
    fun count(vararg kinds: UploadKind) = pending.filter { it.kind in kinds }.map { it.mediaId }.distinct().size
    val parts = listOfNotNull(
        count(UploadKind.PHOTO, UploadKind.THUMBNAIL).takeIf { it > 0 }?.let { "${plural(it, "photo")} uploading" },
        count(UploadKind.VIDEO).takeIf { it > 0 }?.let { "${plural(it, "video")} uploading" },
        count(UploadKind.SIGNATURE).takeIf { it > 0 }?.let { "${plural(it, "signature")} uploading" },
        progress.queue.setAsideItems.takeIf { it > 0uL }?.let { if (it == 1uL) "1 upload needs attention" else "$it uploads need attention" },
    )
    return parts.joinToString(", ")
}

/** The whole status line every screen shows: "12 pending, 3 photos uploading". */
fun statusLine(status: SyncStatus?, uploads: UploadProgress?): String =
    listOf(syncLine(status), uploadLine(uploads)).filter { it.isNotEmpty() }.joinToString(", ")

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

/** The upload queue and the status line built from it and the sync status. */
class UploadsState(private val device: CrewDevice) : AutoCloseable {
    private val _progress = MutableStateFlow<UploadProgress?>(null)
    val progress: StateFlow<UploadProgress?> = _progress.asStateFlow()
    private val _status = MutableStateFlow<SyncStatus?>(null)
    val status: StateFlow<SyncStatus?> = _status.asStateFlow()

    /** "12 pending, 3 photos uploading" (read it off the flows' latest values). */
    val line: String get() = statusLine(_status.value, _progress.value)

    private val uploads: ObserverHandle = device.observeUploads(object : UploadProgressObserver {
        override fun onProgress(progress: UploadProgress) {
            _progress.value = progress
        }
    })
    private val sync: ObserverHandle = device.observeSyncStatus(object : SyncStatusObserver {
        override fun onStatus(status: SyncStatus) {
            _status.value = status
        }
    })

    /** Puts every set-aside item back in line (the "retry" button). */
    fun retrySetAside(): Int {
        val setAside = _progress.value?.items.orEmpty().filter { it.state == UploadState.SET_ASIDE }
        setAside.forEach { device.retryMedia(it.itemId) }
        return setAside.size
    }

    override fun close() {
        uploads.close()
        sync.close()
    }
}

/**
 * A drawing pad's strokes as the finger made them; the Compose Canvas feeds it touch
 * events and draws [strokes]. Points are clamped to the pad, as the library requires.
 */
class SignaturePad(val width: Int, val height: Int) {
    private val done = mutableListOf<crewsync.Stroke>()
    private var current: MutableList<crewsync.StrokePoint>? = null

    val strokes: List<crewsync.Stroke> get() = done + listOfNotNull(current?.let { crewsync.Stroke(it.toList()) })
    val isEmpty: Boolean get() = strokes.all { it.points.isEmpty() }

    fun down(x: Float, y: Float, atMs: Long, pressure: Float? = null) {
        up()
        current = mutableListOf(point(x, y, atMs, pressure))
    }

    fun move(x: Float, y: Float, atMs: Long, pressure: Float? = null) {
        current?.add(point(x, y, atMs, pressure)) ?: down(x, y, atMs, pressure)
    }

    fun up() {
        current?.let { if (it.isNotEmpty()) done.add(crewsync.Stroke(it.toList())) }
        current = null
    }

    fun clear() {
        done.clear()
        current = null
    }

    private fun point(x: Float, y: Float, atMs: Long, pressure: Float?) = crewsync.StrokePoint(
        x.coerceIn(0f, width.toFloat()),
        y.coerceIn(0f, height.toFloat()),
        atMs,
        pressure?.coerceIn(0f, 1f),
    )
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

    fun advance(to: Stage) = device.advanceStage(journeyId, to)

    fun startStep(step: Int) = device.startStep(journeyId, step.toUByte())

    fun completeStep(step: Int) = device.completeStep(journeyId, step.toUByte())

    fun recordGps(point: GpsPoint) = device.recordGpsPoint(journeyId, point)

    /** A photo the camera wrote to [path] (ActivityResultContracts.TakePicture). */
    suspend fun capturePhoto(path: String, step: Int? = null, tag: String? = null, gps: GpsPoint? = null): MediaRef =
        device.capturePhoto(journeyId, path, CaptureInfo(step = step?.toUByte(), tag = tag, gps = gps))

    /** A photo the app holds as bytes (a picker's stream, a test's image). */
    suspend fun capturePhotoBytes(bytes: ByteArray, step: Int? = null, tag: String? = null): MediaRef =
        device.capturePhotoBytes(journeyId, bytes, CaptureInfo(step = step?.toUByte(), tag = tag))

    /** The signer's strokes from [pad], bound to [document] and its SHA-256. */
    suspend fun captureSignature(
        pad: SignaturePad,
        signer: String,
        role: SignerRole,
        document: String,
        documentSha256: String,
        step: Int? = null,
    ): MediaRef = device.captureSignature(
        journeyId,
        SignatureCapture(
            signer, role, document, documentSha256, true,
            pad.width.toUInt(), pad.height.toUInt(), pad.strokes, step?.toUByte(), null,
        ),
    )

    fun refuseSignature(signer: String, role: SignerRole, document: String, documentSha256: String, reason: String): MediaRef =
        device.recordSignatureRefusal(
            journeyId,
            SignatureRefusal(signer, role, document, documentSha256, reason, null, null),
        )

    fun removeMedia(mediaId: String) = device.removeMedia(journeyId, mediaId)

    override fun close() = handle.close()
}
