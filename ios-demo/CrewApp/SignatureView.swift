// The signature pad: a SwiftUI Canvas recording strokes (points with timestamps and,
// on devices that report it, pressure), the signer's name and consent, or a refusal.

import CryptoKit
import SwiftUI

private let billOfLading = "Bill of lading: goods received in the condition noted."

struct SignatureView: View {
    @ObservedObject var model: JourneyModel
    @Environment(\.dismiss) private var dismiss
    @State private var strokes: [[StrokePoint]] = []
    @State private var size: CGSize = .zero
    @State private var signer = ""
    @State private var consent = false
    @State private var reason = ""

    var body: some View {
        Form {
            Text(billOfLading)
            TextField("Signer's name", text: $signer)
            Canvas { context, _ in
                for stroke in strokes {
                    var path = Path()
                    for (i, p) in stroke.enumerated() {
                        let point = CGPoint(x: CGFloat(p.x), y: CGFloat(p.y))
                        if i == 0 { path.move(to: point) } else { path.addLine(to: point) }
                    }
                    context.stroke(path, with: .color(.black), lineWidth: 3)
                }
            }
            .frame(height: 180)
            .background(Color.white)
            .background(GeometryReader { geometry in Color.clear.onAppear { size = geometry.size } })
            .gesture(DragGesture(minimumDistance: 0)
                .onChanged { drag in
                    let point = StrokePoint(
                        x: Float(min(max(drag.location.x, 0), size.width)),
                        y: Float(min(max(drag.location.y, 0), size.height)),
                        atMs: Int64(Date().timeIntervalSince1970 * 1000), pressure: nil)
                    if drag.translation == .zero || strokes.isEmpty { strokes.append([point]) } else { strokes[strokes.count - 1].append(point) }
                }
                .onEnded { _ in strokes.append([]) })
            Toggle("I agree to sign electronically", isOn: $consent)
            HStack {
                Button("Clear") { strokes = [] }
                Spacer()
                Button("Sign") { Task { await sign() } }
                    .disabled(!consent || signer.isEmpty || strokes.allSatisfy(\.isEmpty))
            }
            Section("If the customer will not sign") {
                TextField("Their reason", text: $reason)
                Button("Record refusal") { refuse() }.disabled(signer.isEmpty || reason.isEmpty)
            }
            if let problem = model.problem { Text(problem).foregroundStyle(.red) }
        }
    }

    private var documentSha256: String {
        SHA256.hash(data: Data(billOfLading.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    private func sign() async {
        let capture = SignatureCapture(
            signerName: signer, signerRole: .customer, document: "bill_of_lading",
            documentSha256: documentSha256, consent: true,
            canvasWidth: UInt32(max(size.width, 1)), canvasHeight: UInt32(max(size.height, 1)),
            strokes: strokes.filter { !$0.isEmpty }.map { Stroke(points: $0) }, step: nil, gps: Location.shared.lastFix)
        do {
            // The PNG is rendered and fsynced on crewsync's threads.
            _ = try await model.device.captureSignature(journeyId: model.journeyId, capture: capture)
            dismiss()
        } catch {
            model.problem = "\(error)"
        }
    }

    private func refuse() {
        let refusal = SignatureRefusal(
            signerName: signer, signerRole: .customer, document: "bill_of_lading",
            documentSha256: documentSha256, reason: reason, step: nil, gps: Location.shared.lastFix)
        model.act { device, id in _ = try device.recordSignatureRefusal(journeyId: id, refusal: refusal) }
        dismiss()
    }
}
