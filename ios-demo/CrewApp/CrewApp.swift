// The app: one CrewDevice for the process, suspended when iOS backgrounds the app (no
// SQLite lock may be held while suspended, or iOS kills the app with 0xdead10cc) and
// resumed when it comes back.

import SwiftUI

@main
struct CrewApp: App {
    @Environment(\.scenePhase) private var phase
    @StateObject private var session = CrewSession.open()

    var body: some Scene {
        WindowGroup {
            RootView().environmentObject(session)
        }
        .onChange(of: phase) { _, phase in
            switch phase {
            case .background: session.enterBackground()
            case .active: session.becomeActive()
            default: break
            }
        }
        .backgroundTask(.appRefresh(BackgroundUpload.refreshTask)) {
            await BackgroundUpload.run(session: session)
        }
    }
}

/// The device and who is signed in. Opening the store is milliseconds of disk work.
@MainActor
final class CrewSession: ObservableObject {
    let device: CrewDevice
    @Published var user: SignedInUser?
    @Published var problem: String?
    private let network = NetworkHint()
    private var background: UIBackgroundTaskIdentifier = .invalid

    init(device: CrewDevice) {
        self.device = device
        self.user = try? device.signedInUser()
        network.start(device: device)
        try? device.startBackgroundSync(intervalMs: 60_000)
    }

    static func open() -> CrewSession {
        let folder = FileManager.default.urls(for: .applicationSupportDirectory, in: .userDomainMask)[0]
        try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let path = folder.appendingPathComponent("crewsync.sqlite").path
        // The demo cannot run without its store: a real app shows a recovery screen.
        let device = try! CrewDevice.open(storePath: path, serverUrl: Config.serverURL)
        return CrewSession(device: device)
    }

    func signIn(email: String, password: String) async {
        do {
            user = try await device.signIn(email: email, password: password)
            problem = nil
        } catch let error as CrewsyncError {
            problem = "\(error)"
        } catch {
            problem = error.localizedDescription
        }
    }

    /// iOS gives a backgrounded app a few seconds: finish the write in progress,
    /// checkpoint and close the SQLite file inside them, then schedule the uploads.
    func enterBackground() {
        background = UIApplication.shared.beginBackgroundTask(withName: "crewsync-suspend") { [weak self] in
            self?.endBackgroundTask()
        }
        Task {
            try? await device.suspend()
            BackgroundUpload.schedule()
            endBackgroundTask()
        }
    }

    func becomeActive() {
        Task { try? await device.resume() }
    }

    private func endBackgroundTask() {
        if background != .invalid {
            UIApplication.shared.endBackgroundTask(background)
            background = .invalid
        }
    }
}

enum Config {
    /// The crewsync server. `localhost` reaches the Mac from the simulator.
    static let serverURL = "http://localhost:8080"
}
