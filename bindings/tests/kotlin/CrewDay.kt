// A crew's day through the generated Kotlin bindings, against a real crewsync-server
// on 127.0.0.1 that this program starts, stops (to go offline) and restarts.
// Prints "N passed, N failed"; exits 1 on any failure.

import crewsync.*
import crewsync.demo.JourneyState
import crewsync.demo.SignaturePad
import crewsync.demo.TodayState
import crewsync.demo.UploadsState
import crewsync.demo.statusLine
import crewsync.demo.syncLine
import kotlinx.coroutines.runBlocking
import java.awt.image.BufferedImage
import java.io.ByteArrayOutputStream
import java.io.File
import java.net.ServerSocket
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.ByteBuffer
import java.nio.file.Files
import java.security.MessageDigest
import java.time.LocalDate
import java.time.ZoneOffset
import java.util.UUID
import java.util.concurrent.CopyOnWriteArrayList
import java.util.zip.CRC32
import java.util.zip.Deflater
import javax.imageio.ImageIO

const val PASSWORD = "crewsync-demo"

var passed = 0
var failed = 0

fun verify(what: String, ok: Boolean, detail: () -> String = { "" }) {
    if (ok) {
        passed++
        println("ok   $what")
    } else {
        failed++
        println("FAIL $what ${detail()}")
    }
}

/** Runs [block] expecting the error class [T]. */
inline fun <reified T : CrewsyncException> expectError(what: String, block: () -> Unit) {
    try {
        block()
        verify(what, false) { "no error" }
    } catch (e: CrewsyncException) {
        verify(what, e is T) { "got ${e::class.simpleName}: ${e.message}" }
    }
}

/** Polls [condition] (bounded: 400 × 25 ms). */
fun eventually(what: String, condition: () -> Boolean) {
    repeat(400) {
        if (condition()) {
            verify(what, true)
            return
        }
        Thread.sleep(25)
    }
    verify(what, false) { "never happened" }
}

fun freePort(): Int = ServerSocket(0).use { it.localPort }

fun today(): String = LocalDate.now(ZoneOffset.UTC).toString()

fun sha256(bytes: ByteArray): String =
    MessageDigest.getInstance("SHA-256").digest(bytes).joinToString("") { "%02x".format(it) }

/** A real JPEG from the JVM's own encoder: gradients plus noise, so it compresses like a photo. */
fun jpeg(width: Int, height: Int, seed: Int): ByteArray {
    val image = BufferedImage(width, height, BufferedImage.TYPE_INT_RGB)
    val random = java.util.Random(seed.toLong())
    for (y in 0 until height) for (x in 0 until width) {
        val noise = random.nextInt(48)
        val r = (x * 255 / width + noise).coerceAtMost(255)
        val g = (y * 255 / height + noise / 2).coerceAtMost(255)
        val b = ((x + y) * 127 / (width + height) + noise).coerceAtMost(255)
        image.setRGB(x, y, (r shl 16) or (g shl 8) or b)
    }
    val out = ByteArrayOutputStream()
    check(ImageIO.write(image, "jpg", out)) { "no JPEG writer in this JVM" }
    return out.toByteArray()
}

/** A 60 KB-ish PNG whose header declares 60000×60000 pixels: a decompression bomb. */
fun pngBomb(): ByteArray {
    fun chunk(type: String, data: ByteArray): ByteArray {
        val body = type.toByteArray() + data
        val crc = CRC32().apply { update(body) }.value.toInt()
        return ByteBuffer.allocate(4).putInt(data.size).array() + body + ByteBuffer.allocate(4).putInt(crc).array()
    }
    val header = ByteBuffer.allocate(13).putInt(60_000).putInt(60_000).put(8).put(2).put(0).put(0).put(0).array()
    val deflater = Deflater().apply { setInput(ByteArray(65_536)); finish() }
    val compressed = ByteArray(65_536).let { it.copyOf(deflater.deflate(it)) }
    return byteArrayOf(0x89.toByte(), 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A) +
        chunk("IHDR", header) + chunk("IDAT", compressed) + chunk("IEND", ByteArray(0))
}

/** A signature drawn on a 400×150 pad, through the demo's pad model. */
fun drawnSignature(): SignaturePad {
    val pad = SignaturePad(400, 150)
    val t = System.currentTimeMillis()
    pad.down(20f, 100f, t, 0.4f)
    for (i in 1..40) pad.move(20f + i * 8f, 100f - (i % 7) * 9f, t + i * 16, 0.6f)
    pad.up()
    pad.down(60f, 40f, t + 900)
    pad.move(340f, 60f, t + 1200)
    pad.up()
    return pad
}

fun gps(i: Int) = GpsPoint(43.25 + i * 0.001, -79.87, 5.0f, System.currentTimeMillis() + i)

/** A crewsync-server process on a fixed port and data directory, restartable. */
class Server(private val binary: String) {
    val port = freePort()
    val url = "http://127.0.0.1:$port"
    private val data: File = Files.createTempDirectory("crewsync-kt-server-").toFile()
    private var process: Process? = null

    fun start() {
        process = ProcessBuilder(
            binary, "--listen", "127.0.0.1:$port", "--data-dir", data.path,
            "--sign-in-limit-per-account", "10000/min", "--sign-in-limit-per-device", "10000/min",
        ).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(File(data, "server.log"))).start()
        repeat(600) {
            check(process!!.isAlive) { "server exited; see ${data.path}/server.log" }
            if (runCatching { Http.get("$url/health", null).first == 200 }.getOrDefault(false)) return
            Thread.sleep(50)
        }
        error("server never became healthy")
    }

    fun stop() {
        process?.let {
            it.destroy()
            it.waitFor()
        }
        process = null
    }

    fun remove() = data.deleteRecursively()
}

object Http {
    private val client = HttpClient.newHttpClient()

    fun get(url: String, token: String?) = send("GET", url, token, null)

    fun send(method: String, url: String, token: String?, json: String?): Pair<Int, String> {
        val builder = HttpRequest.newBuilder(URI(url))
            .method(method, json?.let { HttpRequest.BodyPublishers.ofString(it) } ?: HttpRequest.BodyPublishers.noBody())
        if (json != null) builder.header("content-type", "application/json")
        if (token != null) builder.header("authorization", "Bearer $token")
        val answer = client.send(builder.build(), HttpResponse.BodyHandlers.ofString())
        return answer.statusCode() to answer.body()
    }

    /** The first string value of [field] in a JSON text (enough for ids and tokens). */
    fun field(json: String, field: String): String =
        Regex("\"$field\":\"([^\"]*)\"").find(json)?.groupValues?.get(1) ?: error("no $field in $json")
}

/** The office, through the server's HTTP API. */
class Dispatcher(private val url: String) {
    private val token: String
    val locationId: String

    init {
        val (status, body) = Http.send(
            "POST", "$url/v1/auth/sign-in", null,
            """{"email":"dispatcher@lgm.example","password":"$PASSWORD","device_id":"${UUID.randomUUID()}"}""",
        )
        require(status == 200) { body }
        token = Http.field(body, "access_token")
        locationId = Http.field(body, "location_id")
    }

    /** The original bytes of a media item as the server holds them. */
    fun media(mediaId: String): Pair<Int, ByteArray> {
        val request = HttpRequest.newBuilder(URI("$url/v1/media/$mediaId"))
            .header("authorization", "Bearer $token").GET().build()
        val answer = HttpClient.newHttpClient().send(request, HttpResponse.BodyHandlers.ofByteArray())
        return answer.statusCode() to answer.body()
    }

    fun newJourney(vararg crew: String): String {
        val (status, body) = Http.send(
            "POST", "$url/v1/journeys", token,
            """{"date":"${today()}","location_id":"$locationId","truck_number":"T-7"}""",
        )
        require(status == 200 || status == 201) { body }
        val id = Http.field(body, "id")
        crew.forEach { user ->
            val (s, b) = Http.send("POST", "$url/v1/journeys/$id/crew", token, """{"user_id":"$user"}""")
            require(s == 200) { b }
        }
        return id
    }
}

class StatusLog : SyncStatusObserver {
    val seen = CopyOnWriteArrayList<SyncStatus>()
    override fun onStatus(status: SyncStatus) {
        seen.add(status)
    }
}

class UploadLog : UploadProgressObserver {
    val seen = CopyOnWriteArrayList<UploadProgress>()
    override fun onProgress(progress: UploadProgress) {
        seen.add(progress)
    }
}

class JourneyLog : JourneyObserver {
    val seen = CopyOnWriteArrayList<Journey>()
    override fun onJourney(journey: Journey, rejected: List<RejectedChange>) {
        seen.add(journey)
    }
}

fun main() {
    val server = Server(System.getenv("CREWSYNC_SERVER_BIN") ?: error("CREWSYNC_SERVER_BIN is not set"))
    val dir = Files.createTempDirectory("crewsync-kt-devices-").toFile()
    server.start()
    try {
        crewDay(server, dir)
    } catch (e: Throwable) {
        verify("the day ran to the end", false) { e.stackTraceToString() }
    } finally {
        server.stop()
        server.remove()
        dir.deleteRecursively()
    }
    println("$passed passed, $failed failed")
    System.exit(if (failed == 0 && passed > 0) 0 else 1)
}

fun crewDay(server: Server, dir: File) = runBlocking<Unit> {
    verify("the library answers", coreVersion().isNotEmpty())
    val dispatcher = Dispatcher(server.url)

    // Morning: sign in, list today's journeys.
    val driver = CrewDevice.open(File(dir, "driver.sqlite").path, server.url)
    val mover = CrewDevice.open(File(dir, "mover.sqlite").path, server.url)
    val driverUser = driver.signIn("driver@lgm.example", PASSWORD)
    val moverUser = mover.signIn("mover@lgm.example", PASSWORD)
    verify("the driver signs in as a DRIVER", driverUser.role == Role.DRIVER)
    verify("the signed-in user is remembered", driver.signedInUser()?.userId == driverUser.userId)
    val journey = dispatcher.newJourney(driverUser.userId, moverUser.userId)

    val status = StatusLog()
    val statusHandle = driver.observeSyncStatus(status)
    eventually("the status observer gets the current state first") { status.seen.isNotEmpty() }
    verify("a fresh device has never synced", status.seen.first().lastSuccessMs == null)

    driver.syncNow()
    mover.syncNow()
    verify(
        "today's journeys list the new journey",
        driver.listJourneys(dispatcher.locationId, today()).any { it.id == journey },
    )
    driver.upsertLocation(Location(dispatcher.locationId, driverUser.tenantId, "Home", "Etc/UTC"))
    verify(
        "today in the location's timezone lists it too",
        driver.listJourneysToday(dispatcher.locationId).any { it.id == journey },
    )
    eventually("the status observer hears the sync succeed") { status.seen.any { it.lastSuccessMs != null } }

    val moverView = JourneyLog()
    val moverHandle = mover.observeJourney(journey, moverView)
    eventually("the journey observer gets the current journey first") { moverView.seen.isNotEmpty() }

    // The day's work, online.
    driver.startStep(journey, 1u)
    val checklist = driver.addChecklist(journey, 1u, "Truck check", listOf("tires", "straps"))
    val tires = driver.journey(journey).steps[0].activities.first { it.id == checklist }.checklist.first { it.label == "tires" }.key
    driver.setChecklistItem(journey, 1u, checklist, tires, true)
    driver.completeStep(journey, 1u)
    driver.advanceStage(journey, Stage.EN_ROUTE)
    driver.addNote(journey, "Left the depot")
    repeat(4) { driver.recordGpsPoint(journey, gps(it)) }
    driver.addGpsPoints(journey, listOf(gps(10), gps(11)))
    driver.flushGps(journey)
    val read = driver.journey(journey)
    verify("the journey reads back its stage", read.stage == Stage.EN_ROUTE)
    verify("step 1 is completed", read.steps[0].status == StepStatus.COMPLETED)
    verify("the checklist item is ticked", read.steps[0].activities.first { it.id == checklist }.checklist.first { it.key == tires }.checked)
    verify("the GPS fixes are in the journey", read.gpsPointCount == 6uL)
    driver.syncNow()
    verify("everything is acknowledged", driver.pendingChanges() == 0uL)

    // Offline: the server goes away; the crew keeps capturing.
    server.stop()
    driver.advanceStage(journey, Stage.ONSITE)
    driver.addNote(journey, "Written offline")
    driver.addEntry(journey, NewEntry(EntryKind.NOTE, "SC", "Scratched table", gps(20), null, 2u, null))
    repeat(3) { driver.recordGpsPoint(journey, gps(30 + it)) }
    driver.flushGps(journey)

    // Offline media: three photos (real JPEGs, one from the camera's file) and a signature.
    val uploads = UploadLog()
    val uploadsHandle = driver.observeUploads(uploads)
    eventually("the upload observer gets the current queue first") { uploads.seen.isNotEmpty() }
    val queued = uploads.seen.first().queue.pendingItems
    val uploadsState = UploadsState(driver)
    val jpegs = (1..3).map { jpeg(640, 480, it) }
    val cameraFile = File(dir, "camera.jpg").apply { writeBytes(jpegs[0]) }
    val screenOffline = JourneyState(driver, journey)
    val sealedPhoto = screenOffline.capturePhoto(cameraFile.path, step = 1, tag = "BR")
    val photo2 = screenOffline.capturePhotoBytes(jpegs[1], step = 2)
    val photo3 = driver.capturePhotoBytes(journey, jpegs[2], CaptureInfo(step = 3u, text = "Hallway"))
    val photos = listOf(sealedPhoto, photo2, photo3)
    verify("each photo is kept byte for byte", photos.zip(jpegs).all { (ref, bytes) -> ref.sha256 == sha256(bytes) })
    verify("the camera file is copied, not moved", cameraFile.readBytes().contentEquals(jpegs[0]))
    verify("a photo's size is read from the image", sealedPhoto.width == 640u && sealedPhoto.height == 480u)
    verify("a photo gets a thumbnail", sealedPhoto.thumbnailSha256 != null)
    screenOffline.removeMedia(photo3.id)
    verify("a crew may remove a photo before it is evidence", driver.journey(journey).media.first { it.id == photo3.id }.removed != null)
    val pad = drawnSignature()
    verify("the pad keeps both strokes", pad.strokes.size == 2 && !pad.isEmpty)
    val signature = screenOffline.captureSignature(
        pad, "Ada Customer", SignerRole.CUSTOMER, "bill_of_lading", sha256("BOL v1".toByteArray()),
    )
    verify("the signature binds its document", signature.signature?.document == "bill_of_lading" && signature.signature?.consent == true)
    verify("the signature's PNG is hashed", signature.sha256?.length == 64)
    val expected = queued + 7uL // three photos and their thumbnails, one signature
    eventually("the upload observer sees $expected pending") { uploads.seen.last().queue.pendingItems == expected }
    verify("media progress says the same", driver.mediaProgress().pendingItems == expected)
    verify("the queue lists each item", driver.uploadQueue().count { it.state == UploadState.PENDING }.toULong() == expected)
    eventually("the demo's status line counts photos and the signature") {
        uploadsState.line.contains("3 photos uploading, 1 signature uploading")
    }
    val refusal = screenOffline.refuseSignature("Bo Customer", SignerRole.CUSTOMER, "inventory", sha256("inv".toByteArray()), "Will sign at delivery")
    verify("a refusal is kept with its reason and no image", refusal.signature?.refused == "Will sign at delivery" && refusal.sha256 == null)
    verify("a refusal queues nothing", driver.mediaProgress().pendingItems == expected)
    expectError<CrewsyncException.InvalidInput>("an unsupported format is InvalidInput") {
        runBlocking { driver.capturePhotoBytes(journey, "GIF89a-not-a-photo".toByteArray(), CaptureInfo()) }
    }
    expectError<CrewsyncException.InvalidInput>("a decompression bomb is InvalidInput") {
        runBlocking { driver.capturePhotoBytes(journey, pngBomb(), CaptureInfo()) }
    }
    expectError<CrewsyncException.InvalidInput>("a signature without consent is InvalidInput") {
        runBlocking {
            driver.captureSignature(
                journey,
                SignatureCapture("Ada", SignerRole.CUSTOMER, "bill_of_lading", sha256(ByteArray(1)), false, 400u, 150u, pad.strokes, null, null),
            )
        }
    }
    expectError<CrewsyncException.NotAllowed>("removing sealed evidence is NotAllowed") { driver.removeMedia(journey, sealedPhoto.id) }
    verify("refused captures stored nothing", driver.mediaProgress().pendingItems == expected)
    verify("no media problems on a healthy store", driver.mediaProblems().isEmpty())
    expectError<CrewsyncException.Network>("sync offline is a Network error") { runBlocking { driver.syncNow() } }
    verify("offline work is queued", driver.pendingChanges() > 0uL)
    eventually("the status observer hears the failure") { status.seen.any { it.lastError != null } }

    // Reconnect: one sync pushes the entries, then uploads what they reference.
    server.start()
    val reconnected = driver.syncNow()
    verify("the sync uploaded every queued file", reconnected.media.uploaded.toULong() == expected - queued) {
        "${reconnected.media}"
    }
    verify("after reconnecting nothing is pending", driver.pendingChanges() == 0uL)
    mover.syncNow()
    val seenByMover = mover.journey(journey)
    verify("the second device sees the offline stage", seenByMover.stage == Stage.ONSITE)
    verify(
        "the second device sees every note",
        seenByMover.notes.map { it.text }.containsAll(listOf("Left the depot", "Written offline")),
    )
    verify("the second device sees the entry", seenByMover.entries.any { it.text == "Scratched table" && it.tag == "SC" })
    verify("the second device sees every GPS fix", seenByMover.gpsPointCount == 9uL)
    val moverMedia = seenByMover.media.associateBy { it.id }
    verify("the second device sees every media reference", photos.all { it.id in moverMedia } && signature.id in moverMedia)
    verify("the second device sees the signer", moverMedia[signature.id]?.signature?.signerName == "Ada Customer")
    eventually("the mover's observer hears the offline note") {
        moverView.seen.any { j -> j.notes.any { it.text == "Written offline" } }
    }
    verify("nothing is left to upload", driver.mediaProgress().pendingItems == 0uL && reconnected.media.progress.pendingItems == 0uL)
    for ((ref, bytes) in listOf(sealedPhoto to jpegs[0], photo2 to jpegs[1])) {
        val (code, body) = dispatcher.media(ref.id)
        verify("the server holds photo ${ref.id.takeLast(6)} byte for byte", code == 200 && sha256(body) == sha256(bytes)) {
            "HTTP $code, ${body.size} bytes"
        }
    }
    val (signatureCode, signatureBody) = dispatcher.media(signature.id)
    verify("the server holds the signature's PNG byte for byte", signatureCode == 200 && sha256(signatureBody) == signature.sha256) {
        "HTTP $signatureCode"
    }
    eventually("the upload observer hears the queue drain") { uploads.seen.last().queue.pendingItems == 0uL }
    verify("the upload observer heard items pending, then none", uploads.seen.any { it.queue.pendingItems == expected })
    eventually("the status line no longer says uploading") { !uploadsState.line.contains("uploading") }
    verify("the sync status carries the media queue", driver.syncStatus().media.pendingItems == 0uL)
    verify("the status observer heard media pending", status.seen.any { it.media.pendingItems > 0uL })
    uploadsState.close()
    screenOffline.close()
    uploadsHandle.close()

    // The Android demo's state holders (android-demo/shared) over the same device.
    val today = TodayState(driver, dispatcher.locationId)
    eventually("the demo's today list shows the journey") { today.journeys.value.any { it.id == journey } }
    verify("the demo's sync line says synced", today.line == "synced") { today.line }
    verify("the sync line counts pending work", syncLine(driver.syncStatus().copy(pendingChanges = 12uL, lastSuccessMs = 1L)) == "12 pending")
    val threePhotos = UploadProgress(
        MediaProgress(6uL, 1uL, 0uL, 0uL), null,
        photos.flatMap { p ->
            listOf(UploadKind.PHOTO, UploadKind.THUMBNAIL).map { kind ->
                UploadItem("${p.id}-$kind", p.id, journey, kind, "image/jpeg", "", 1uL, 0uL, 0u, false, UploadState.PENDING, null)
            }
        },
    )
    verify(
        "the status line reads as the issue shows it",
        statusLine(driver.syncStatus().copy(pendingChanges = 12uL, lastSuccessMs = 1L), threePhotos) == "12 pending, 3 photos uploading",
    ) { statusLine(driver.syncStatus().copy(pendingChanges = 12uL, lastSuccessMs = 1L), threePhotos) }
    val screen = JourneyState(driver, journey)
    eventually("the demo's journey screen shows the journey") { screen.journey.value?.id == journey }
    screen.addNote("Through the demo's state holder")
    eventually("the journey screen updates after its own action") {
        screen.journey.value?.notes?.any { it.text == "Through the demo's state holder" } == true
    }
    screen.close()
    today.close()

    // A cancelled observer hears nothing more; a kept one (the control) does.
    val cancelled = JourneyLog()
    val kept = JourneyLog()
    val cancelledHandle = driver.observeJourney(journey, cancelled)
    val keptHandle = driver.observeJourney(journey, kept)
    eventually("both observers get the current journey") { cancelled.seen.size == 1 && kept.seen.size == 1 }
    cancelledHandle.cancel()
    driver.addNote(journey, "After the cancel")
    eventually("the kept observer hears the note") { kept.seen.size == 2 }
    driver.addNote(journey, "Second after the cancel")
    eventually("the kept observer hears the second note") { kept.seen.size == 3 }
    verify("the cancelled observer heard nothing more", cancelled.seen.size == 1)
    keptHandle.close()
    moverHandle.close()

    // Every error variant.
    val stranger = CrewDevice.open(File(dir, "stranger.sqlite").path, server.url)
    expectError<CrewsyncException.Auth>("a wrong password is Auth") {
        runBlocking { stranger.signIn("driver@lgm.example", "wrong") }
    }
    expectError<CrewsyncException.Auth>("acting signed out is Auth") { stranger.addNote(journey, "x") }
    expectError<CrewsyncException.InvalidInput>("a malformed id is InvalidInput") { driver.journey("nope") }
    expectError<CrewsyncException.InvalidInput>("a stage moving back is InvalidInput") {
        driver.advanceStage(journey, Stage.EN_ROUTE)
    }
    expectError<CrewsyncException.NotAllowed>("a driver assigning crew is NotAllowed") {
        driver.assignCrew(journey, moverUser.userId, Role.MOVER)
    }
    stranger.shutdown()
    expectError<CrewsyncException.Other>("a closed device is Other") { stranger.journeyIds() }
    val fullDir = System.getenv("CREWSYNC_FULL_DIR")
    if (fullDir == null) {
        println("skip a full disk is StorageFull (no small disk: run through with-small-disk)")
    } else {
        val full = CrewDevice.open(File(fullDir, "full.sqlite").path, "http://127.0.0.1:1")
        expectError<CrewsyncException.StorageFull>("a full disk is StorageFull") {
            for (i in 0 until 5_000) {
                full.upsertLocation(
                    Location("0192f1c4-0000-7000-8000-%012d".format(i), driverUser.tenantId, "x".repeat(20_000), "Etc/UTC"),
                )
            }
        }
        // Closing checkpoints the WAL, which needs room too.
        expectError<CrewsyncException.StorageFull>("shutdown on a full disk is StorageFull") { full.shutdown() }
    }

    // A queued file lost behind the store's back: reported at open, set aside, retried
    // through the demo's upload state.
    val lossy = CrewDevice.open(File(dir, "lossy.sqlite").path, server.url)
    lossy.signIn("driver@lgm.example", PASSWORD)
    lossy.syncNow()
    lossy.setNetworkType(NetworkType.OFFLINE) // keep it queued
    val lost = lossy.capturePhotoBytes(journey, jpeg(320, 240, 9), CaptureInfo())
    lossy.shutdown()
    val original = File(dir, "lossy.sqlite.media").listFiles().orEmpty().filter { it.name.startsWith(lost.id) && !it.name.contains("thumb") }
    verify("the original is kept beside the store", original.size == 1)
    original.forEach { it.delete() }
    val reopened = CrewDevice.open(File(dir, "lossy.sqlite").path, server.url)
    val problems = reopened.mediaProblems()
    verify("the lost file is reported", problems.size == 1 && problems[0].reason.contains("missing")) { "$problems" }
    val lossyUploads = UploadsState(reopened)
    eventually("the status line asks for attention") { lossyUploads.line.contains("1 upload needs attention") }
    verify("retry puts the set-aside item back in line", lossyUploads.retrySetAside() == 1)
    eventually("nothing is set aside after the retry") { lossyUploads.progress.value?.queue?.setAsideItems == 0uL }
    lossyUploads.close()
    reopened.shutdown()

    // Backgrounding: suspend lets go of the file, resume carries on.
    driver.startBackgroundSync(60_000uL)
    driver.suspend()
    verify("the device says it is suspended", driver.isSuspended())
    expectError<CrewsyncException.Other>("a suspended store refuses work") { driver.addNote(journey, "x") }
    driver.resume()
    driver.addNote(journey, "After resuming")
    eventually("background sync pushes the note after resuming") { driver.pendingChanges() == 0uL }
    driver.stopBackgroundSync()

    // Network hint.
    driver.setNetworkType(NetworkType.OFFLINE)
    verify("the network hint is kept", driver.networkType() == NetworkType.OFFLINE)
    verify("offline pauses background sync", driver.syncStatus().paused)
    driver.setNetworkType(NetworkType.WIFI)
    verify("back online resumes it", !driver.syncStatus().paused)
    verify("the Wi-Fi hint is kept", driver.networkType() == NetworkType.WIFI)

    // Evening: sign out.
    verify("sign-out is confirmed by the server", driver.signOut())
    verify("nobody is signed in after sign-out", driver.signedInUser() == null)
    expectError<CrewsyncException.Auth>("syncing signed out is Auth") { runBlocking { driver.syncNow() } }

    statusHandle.close()
    driver.shutdown()
    mover.shutdown()
}
