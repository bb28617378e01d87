// Background upload: WorkManager runs this when the phone has a network, even after
// the app was swiped away. Short queues finish inside the worker's ~10 minutes; a long
// one (a video, a day of photos on a slow link) is promoted to a foreground service
// of type dataSync, so Android shows a notification and does not stop it.

package crewsync.demo.app

import android.app.NotificationChannel
import android.app.NotificationManager
import android.content.Context
import android.content.pm.ServiceInfo
import android.os.Build
import androidx.core.app.NotificationCompat
import androidx.work.Constraints
import androidx.work.CoroutineWorker
import androidx.work.ExistingWorkPolicy
import androidx.work.ForegroundInfo
import androidx.work.NetworkType as WorkNetwork
import androidx.work.OneTimeWorkRequestBuilder
import androidx.work.WorkManager
import androidx.work.WorkerParameters
import crewsync.CrewsyncException

class UploadWorker(context: Context, params: WorkerParameters) : CoroutineWorker(context, params) {

    override suspend fun doWork(): Result {
        val device = (applicationContext as CrewApp).device
        val queued = runCatching { device.mediaProgress() }.getOrNull() ?: return Result.retry()
        if (queued.pendingItems == 0uL) return Result.success()
        // Over a few MB the upload may outlast the worker's window: go foreground.
        if (queued.pendingBytes > FOREGROUND_OVER_BYTES) setForeground(foregroundInfo(queued.pendingItems))
        return try {
            // sync_now exchanges documents first (an upload needs its entry on the
            // server), then uploads the queue. It suspends; crewsync does the work
            // on its own threads, so cancelling this worker never leaves half a file.
            val outcome = device.syncNow()
            // Items left over (a Wi-Fi-only video on cellular, a server refusal being
            // backed off) get another run; set-aside ones wait for the crew's retry.
            if (outcome.media.progress.pendingItems == 0uL) Result.success() else Result.retry()
        } catch (e: CrewsyncException.Network) {
            Result.retry()
        } catch (e: CrewsyncException.Auth) {
            Result.failure() // the crew must sign in again; the app shows it
        }
    }

    private fun foregroundInfo(pending: ULong): ForegroundInfo {
        val manager = applicationContext.getSystemService(NotificationManager::class.java)
        manager.createNotificationChannel(
            NotificationChannel(CHANNEL, applicationContext.getString(R.string.upload_channel), NotificationManager.IMPORTANCE_LOW),
        )
        val notification = NotificationCompat.Builder(applicationContext, CHANNEL)
            .setContentTitle(applicationContext.getString(R.string.uploading))
            .setContentText("$pending files to go")
            .setSmallIcon(android.R.drawable.stat_sys_upload)
            .setOngoing(true)
            .build()
        return if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q) {
            ForegroundInfo(NOTIFICATION_ID, notification, ServiceInfo.FOREGROUND_SERVICE_TYPE_DATA_SYNC)
        } else {
            ForegroundInfo(NOTIFICATION_ID, notification)
        }
    }

    companion object {
        private const val CHANNEL = "uploads"
        private const val NOTIFICATION_ID = 6
        private const val FOREGROUND_OVER_BYTES: ULong = 5uL * 1024uL * 1024uL
        private const val WORK_NAME = "crewsync-upload"

        /** Queues one upload run for when a network is up (kept if one is queued). */
        fun schedule(context: Context) {
            val request = OneTimeWorkRequestBuilder<UploadWorker>()
                .setConstraints(Constraints.Builder().setRequiredNetworkType(WorkNetwork.CONNECTED).build())
                .build()
            WorkManager.getInstance(context).enqueueUniqueWork(WORK_NAME, ExistingWorkPolicy.KEEP, request)
        }
    }
}
