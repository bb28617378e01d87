// One activity, Compose navigation: sign in → today's journeys → a journey → the
// signature pad. Every screen shows the status line at the top.

package crewsync.demo.app

import android.os.Bundle
import androidx.activity.ComponentActivity
import androidx.activity.compose.setContent
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.Surface
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.navigation.compose.NavHost
import androidx.navigation.compose.composable
import androidx.navigation.compose.rememberNavController
import crewsync.CrewDevice
import crewsync.SignedInUser

class MainActivity : ComponentActivity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val device = (application as CrewApp).device
        setContent {
            MaterialTheme {
                Surface(Modifier.fillMaxSize()) { CrewNavigation(device) }
            }
        }
    }
}

@Composable
fun CrewNavigation(device: CrewDevice) {
    val navigation = rememberNavController()
    var user by remember { mutableStateOf(runCatching { device.signedInUser() }.getOrNull()) }
    Column {
        StatusLine(device)
        NavHost(navigation, startDestination = if (user == null) "sign-in" else "today") {
            composable("sign-in") {
                SignInScreen(device) { signedIn: SignedInUser ->
                    user = signedIn
                    navigation.navigate("today") { popUpTo("sign-in") { inclusive = true } }
                }
            }
            composable("today") {
                val location = user?.locationId ?: return@composable
                TodayScreen(device, location) { journeyId -> navigation.navigate("journey/$journeyId") }
            }
            composable("journey/{id}") { entry ->
                val id = entry.arguments?.getString("id") ?: return@composable
                JourneyScreen(device, id, onSign = { navigation.navigate("sign/$id") })
            }
            composable("sign/{id}") { entry ->
                val id = entry.arguments?.getString("id") ?: return@composable
                SignatureScreen(device, id) { navigation.popBackStack() }
            }
        }
    }
}
