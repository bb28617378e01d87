// The application object: one CrewDevice for the whole process (the store, its sync
// and its runtime), the network hint, and the background upload work.

package crewsync.demo.app

import android.app.Application
import android.net.ConnectivityManager
import android.net.Network
import android.net.NetworkCapabilities
import crewsync.CrewDevice
import crewsync.NetworkType
import java.io.File

class CrewApp : Application() {
    /** Opened once; every screen and the upload worker share it. */
    lateinit var device: CrewDevice
        private set

    override fun onCreate() {
        super.onCreate()
        // Opening runs migrations and checks the media folder: milliseconds, but still
        // disk work; StrictMode would flag it. A production app opens it on a
        // background thread behind a splash screen.
        device = CrewDevice.open(File(filesDir, "crewsync.sqlite").path, BuildConfig.SERVER_URL)
        watchNetwork()
        device.startBackgroundSync(60_000uL)
        UploadWorker.schedule(this)
    }

    /** Tells crewsync which network the phone is on: offline pauses sync; large
     *  videos wait for an unmetered network. */
    private fun watchNetwork() {
        val connectivity = getSystemService(ConnectivityManager::class.java)
        connectivity.registerDefaultNetworkCallback(object : ConnectivityManager.NetworkCallback() {
            override fun onCapabilitiesChanged(network: Network, capabilities: NetworkCapabilities) {
                val type = when {
                    !capabilities.hasCapability(NetworkCapabilities.NET_CAPABILITY_VALIDATED) -> NetworkType.OFFLINE
                    capabilities.hasCapability(NetworkCapabilities.NET_CAPABILITY_NOT_METERED) -> NetworkType.WIFI
                    else -> NetworkType.CELLULAR
                }
                runCatching { device.setNetworkType(type) }
                if (type != NetworkType.OFFLINE) UploadWorker.schedule(this@CrewApp)
            }

            override fun onLost(network: Network) {
                runCatching { device.setNetworkType(NetworkType.OFFLINE) }
            }
        })
    }
}
