// Sign-in and today's journeys at the crew's location.

package crewsync.demo.app

import androidx.compose.foundation.clickable
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.items
import androidx.compose.foundation.text.KeyboardOptions
import androidx.compose.material3.Button
import androidx.compose.material3.ListItem
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
import androidx.compose.ui.text.input.KeyboardType
import androidx.compose.ui.text.input.PasswordVisualTransformation
import androidx.compose.ui.unit.dp
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import crewsync.CrewDevice
import crewsync.CrewsyncException
import crewsync.SignedInUser
import crewsync.demo.TodayState
import kotlinx.coroutines.launch

@Composable
fun SignInScreen(device: CrewDevice, onSignedIn: (SignedInUser) -> Unit) {
    var email by remember { mutableStateOf("") }
    var password by remember { mutableStateOf("") }
    var problem by remember { mutableStateOf<String?>(null) }
    val scope = rememberCoroutineScope()
    Column(Modifier.padding(16.dp), verticalArrangement = Arrangement.spacedBy(8.dp)) {
        OutlinedTextField(email, { email = it }, label = { Text("Email") },
            keyboardOptions = KeyboardOptions(keyboardType = KeyboardType.Email), modifier = Modifier.fillMaxWidth())
        OutlinedTextField(password, { password = it }, label = { Text("Password") },
            visualTransformation = PasswordVisualTransformation(), modifier = Modifier.fillMaxWidth())
        Button(onClick = {
            scope.launch {
                try {
                    onSignedIn(device.signIn(email.trim(), password))
                } catch (e: CrewsyncException.Auth) {
                    problem = "Wrong email or password"
                } catch (e: CrewsyncException.Network) {
                    problem = "No connection to the office; try again when online"
                }
            }
        }) { Text("Sign in") }
        problem?.let { Text(it) }
    }
}

@Composable
fun TodayScreen(device: CrewDevice, locationId: String, onOpen: (String) -> Unit) {
    val state = remember(device, locationId) { TodayState(device, locationId) }
    DisposableEffect(state) { onDispose { state.close() } }
    val journeys by state.journeys.collectAsStateWithLifecycle()
    LazyColumn {
        items(journeys, key = { it.id }) { journey ->
            ListItem(
                headlineContent = { Text("Truck ${journey.truckNumber ?: "—"} · ${journey.stage}") },
                supportingContent = {
                    Text(
                        "${journey.crew.size} crew · ${journey.photoCount} photos · " +
                            "${journey.signatureCount} signatures · ${journey.pendingChanges} pending",
                    )
                },
                modifier = Modifier.clickable { onOpen(journey.id) },
            )
        }
    }
}
