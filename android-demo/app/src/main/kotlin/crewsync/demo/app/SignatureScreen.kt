// The signature pad: a Compose Canvas feeding the shared SignaturePad model, the
// signer's name, the consent question, and a refusal with its reason.

package crewsync.demo.app

import androidx.compose.foundation.Canvas
import androidx.compose.foundation.background
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.height
import androidx.compose.foundation.layout.padding
import androidx.compose.material3.Button
import androidx.compose.material3.Checkbox
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.DisposableEffect
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableIntStateOf
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.rememberCoroutineScope
import androidx.compose.runtime.setValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.geometry.Offset
import androidx.compose.ui.graphics.Color
import androidx.compose.ui.graphics.StrokeCap
import androidx.compose.ui.input.pointer.pointerInput
import androidx.compose.ui.layout.onSizeChanged
import androidx.compose.ui.unit.dp
import crewsync.CrewDevice
import crewsync.CrewsyncException
import crewsync.SignerRole
import crewsync.demo.JourneyState
import crewsync.demo.SignaturePad
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import java.security.MessageDigest

/** The document the customer signs, as shown to them; its SHA-256 is bound to the signature. */
private const val BILL_OF_LADING = "Bill of lading: goods received in the condition noted."

@Composable
fun SignatureScreen(device: CrewDevice, journeyId: String, onDone: () -> Unit) {
    val state = remember(device, journeyId) { JourneyState(device, journeyId) }
    DisposableEffect(state) { onDispose { state.close() } }
    var pad by remember { mutableStateOf<SignaturePad?>(null) }
    var redraw by remember { mutableIntStateOf(0) } // bumped on each touch event
    var signer by remember { mutableStateOf("") }
    var consent by remember { mutableStateOf(false) }
    var reason by remember { mutableStateOf("") }
    var problem by remember { mutableStateOf<String?>(null) }
    val scope = rememberCoroutineScope()
    val documentSha256 = remember { sha256(BILL_OF_LADING) }

    Column(Modifier.padding(16.dp), verticalArrangement = Arrangement.spacedBy(8.dp)) {
        Text(BILL_OF_LADING)
        OutlinedTextField(signer, { signer = it }, label = { Text("Signer's name") }, modifier = Modifier.fillMaxWidth())
        Canvas(
            Modifier
                .fillMaxWidth()
                .height(180.dp)
                .background(Color.White)
                .onSizeChanged { pad = SignaturePad(it.width, it.height) }
                .pointerInput(Unit) {
                    awaitPointerEventScope {
                        while (true) {
                            val event = awaitPointerEvent()
                            val change = event.changes.firstOrNull() ?: continue
                            val current = pad ?: continue
                            val p = change.position
                            val pressure = change.pressure.takeIf { it > 0f && it != 1f }
                            when {
                                change.pressed && !change.previousPressed -> current.down(p.x, p.y, change.uptimeMillis, pressure)
                                change.pressed -> current.move(p.x, p.y, change.uptimeMillis, pressure)
                                else -> current.up()
                            }
                            change.consume()
                            redraw++
                        }
                    }
                },
        ) {
            redraw.let { } // read, so the canvas redraws with each touch
            pad?.strokes?.forEach { stroke ->
                stroke.points.zipWithNext().forEach { (a, b) ->
                    drawLine(Color.Black, Offset(a.x, a.y), Offset(b.x, b.y), strokeWidth = 4f, cap = StrokeCap.Round)
                }
            }
        }
        Row(verticalAlignment = Alignment.CenterVertically) {
            Checkbox(consent, { consent = it })
            Text("I agree to sign electronically")
        }
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            OutlinedButton(onClick = { pad?.clear(); redraw++ }) { Text("Clear") }
            Button(
                enabled = consent && signer.isNotBlank() && pad?.isEmpty == false,
                onClick = {
                    val drawn = pad ?: return@Button
                    scope.launch {
                        try {
                            // Rendering the PNG and its fsync happen on crewsync's threads.
                            state.captureSignature(drawn, signer.trim(), SignerRole.CUSTOMER, "bill_of_lading", documentSha256)
                            onDone()
                        } catch (e: CrewsyncException) {
                            problem = e.message
                        }
                    }
                },
            ) { Text("Sign") }
        }
        Text("Or, if the customer will not sign:", style = MaterialTheme.typography.labelLarge)
        OutlinedTextField(reason, { reason = it }, label = { Text("Their reason") }, modifier = Modifier.fillMaxWidth())
        OutlinedButton(
            enabled = signer.isNotBlank() && reason.isNotBlank(),
            onClick = {
                scope.launch {
                    try {
                        withContext(Dispatchers.IO) {
                            state.refuseSignature(signer.trim(), SignerRole.CUSTOMER, "bill_of_lading", documentSha256, reason.trim())
                        }
                        onDone()
                    } catch (e: CrewsyncException) {
                        problem = e.message
                    }
                }
            },
        ) { Text("Record refusal") }
        problem?.let { Text(it, color = MaterialTheme.colorScheme.error) }
    }
}

private fun sha256(text: String): String =
    MessageDigest.getInstance("SHA-256").digest(text.toByteArray()).joinToString("") { "%02x".format(it) }
