// Platform glue: the camera, the last GPS fix, and the network hint.

import CoreLocation
import Network
import SwiftUI
import UIKit

/// The camera through UIImagePickerController; hands back a JPEG file path that
/// crewsync copies (the original bytes, as the camera encoded them).
struct CameraPicker: UIViewControllerRepresentable {
    let onPhoto: (String) -> Void
    @Environment(\.dismiss) private var dismiss

    func makeUIViewController(context: Context) -> UIImagePickerController {
        let picker = UIImagePickerController()
        picker.sourceType = UIImagePickerController.isSourceTypeAvailable(.camera) ? .camera : .photoLibrary
        picker.delegate = context.coordinator
        return picker
    }

    func updateUIViewController(_ controller: UIImagePickerController, context: Context) {}

    func makeCoordinator() -> Coordinator { Coordinator(self) }

    final class Coordinator: NSObject, UIImagePickerControllerDelegate, UINavigationControllerDelegate {
        let parent: CameraPicker
        init(_ parent: CameraPicker) { self.parent = parent }

        func imagePickerController(_ picker: UIImagePickerController,
                                   didFinishPickingMediaWithInfo info: [UIImagePickerController.InfoKey: Any]) {
            defer { parent.dismiss() }
            guard let image = info[.originalImage] as? UIImage, let jpeg = image.jpegData(compressionQuality: 0.9) else { return }
            let file = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString + ".jpg")
            guard (try? jpeg.write(to: file)) != nil else { return }
            parent.onPhoto(file.path)
        }

        func imagePickerControllerDidCancel(_ picker: UIImagePickerController) { parent.dismiss() }
    }
}

/// The last location fix, kept up to date while the app runs.
final class Location: NSObject, CLLocationManagerDelegate, @unchecked Sendable {
    static let shared = Location()
    private let manager = CLLocationManager()
    private(set) var lastFix: GpsPoint?

    override init() {
        super.init()
        manager.delegate = self
        manager.requestWhenInUseAuthorization()
        manager.startUpdatingLocation()
    }

    func locationManager(_ manager: CLLocationManager, didUpdateLocations locations: [CLLocation]) {
        guard let l = locations.last else { return }
        lastFix = GpsPoint(lat: l.coordinate.latitude, lon: l.coordinate.longitude,
                           accuracyM: Float(l.horizontalAccuracy), atMs: Int64(l.timestamp.timeIntervalSince1970 * 1000))
    }
}

/// Tells crewsync which network the phone is on (NWPathMonitor): offline pauses sync,
/// large videos wait for an unconstrained, unmetered network.
final class NetworkHint: @unchecked Sendable {
    private let monitor = NWPathMonitor()

    func start(device: CrewDevice) {
        monitor.pathUpdateHandler = { path in
            let type: NetworkType
            if path.status != .satisfied {
                type = .offline
            } else if path.isExpensive || path.isConstrained {
                type = .cellular
            } else {
                type = .wifi
            }
            try? device.setNetworkType(network: type)
        }
        monitor.start(queue: DispatchQueue(label: "crewsync.network"))
    }
}
