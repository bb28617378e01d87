// State holders over the Swift bindings, the counterparts of the Android demo's
// shared/State.kt. Observer callbacks arrive on crewsync's threads: each one hops to
// the main actor before touching @Published state.

import Foundation

/// Runs `work` on the main thread, in the order the callbacks came (the main queue is
/// FIFO; separate `Task`s would not promise that).
private func onMain(_ work: @escaping @MainActor () -> Void) {
    DispatchQueue.main.async { MainActor.assumeIsolated { work() } }
}

/// Bridges a crewsync observer to a main-actor closure.
final class StatusBridge: SyncStatusObserver, @unchecked Sendable {
    private let deliver: @MainActor (SyncStatus) -> Void
    init(_ deliver: @escaping @MainActor (SyncStatus) -> Void) { self.deliver = deliver }
    func onStatus(status: SyncStatus) { onMain { self.deliver(status) } }
}

final class UploadBridge: UploadProgressObserver, @unchecked Sendable {
    private let deliver: @MainActor (UploadProgress) -> Void
    init(_ deliver: @escaping @MainActor (UploadProgress) -> Void) { self.deliver = deliver }
    func onProgress(progress: UploadProgress) { onMain { self.deliver(progress) } }
}

final class JourneyBridge: JourneyObserver, @unchecked Sendable {
    private let deliver: @MainActor (Journey, [RejectedChange]) -> Void
    init(_ deliver: @escaping @MainActor (Journey, [RejectedChange]) -> Void) { self.deliver = deliver }
    func onJourney(journey: Journey, rejected: [RejectedChange]) {
        onMain { self.deliver(journey, rejected) }
    }
}

/// "12 pending, 3 photos uploading" — the same wording as the Android demo.
enum StatusWording {
    static func sync(_ s: SyncStatus?) -> String {
        guard let s else { return "starting" }
        if s.paused { return "paused (offline)" }
        if s.syncing { return "syncing, \(s.pendingChanges) pending" }
        if s.lastError != nil && s.pendingChanges > 0 { return "offline, \(s.pendingChanges) pending" }
        if s.pendingChanges > 0 { return "\(s.pendingChanges) pending" }
        return s.lastSuccessMs != nil ? "synced" : "not synced yet"
    }

    static func uploads(_ p: UploadProgress?) -> String {
        guard let p else { return "" }
        let pending = p.items.filter { $0.state == .pending }
        func count(_ kinds: [UploadKind]) -> Int { Set(pending.filter { kinds.contains($0.kind) }.map(\.mediaId)).count }
        func plural(_ n: Int, _ one: String) -> String { n == 1 ? "1 \(one)" : "\(n) \(one)s" }
        var parts: [String] = []
        let photos = count([.photo, .thumbnail]), videos = count([.video]), signatures = count([.signature])
        if photos > 0 { parts.append("\(plural(photos, "photo")) uploading") }
        if videos > 0 { parts.append("\(plural(videos, "video")) uploading") }
        if signatures > 0 { parts.append("\(plural(signatures, "signature")) uploading") }
        let setAside = p.queue.setAsideItems
        if setAside > 0 { parts.append(setAside == 1 ? "1 upload needs attention" : "\(setAside) uploads need attention") }
        return parts.joined(separator: ", ")
    }

    static func line(_ s: SyncStatus?, _ p: UploadProgress?) -> String {
        [sync(s), uploads(p)].filter { !$0.isEmpty }.joined(separator: ", ")
    }
}

@MainActor
final class StatusModel: ObservableObject {
    @Published private(set) var status: SyncStatus?
    @Published private(set) var uploads: UploadProgress?
    private var handles: [ObserverHandle] = [] // cancelled when released

    init(device: CrewDevice) {
        handles.append(device.observeSyncStatus(observer: StatusBridge { [weak self] in self?.status = $0 }))
        if let handle = try? device.observeUploads(observer: UploadBridge({ [weak self] in self?.uploads = $0 })) {
            handles.append(handle)
        }
    }

    var line: String { StatusWording.line(status, uploads) }
}

@MainActor
final class TodayModel: ObservableObject {
    @Published private(set) var journeys: [JourneySummary] = []
    private let device: CrewDevice
    private let locationId: String
    private var handle: ObserverHandle?

    init(device: CrewDevice, locationId: String) {
        self.device = device
        self.locationId = locationId
        handle = device.observeSyncStatus(observer: StatusBridge { [weak self] status in
            if !status.syncing { self?.refresh() }
        })
    }

    func refresh() {
        journeys = (try? device.listJourneysToday(locationId: locationId)) ?? journeys
    }
}

@MainActor
final class JourneyModel: ObservableObject {
    @Published private(set) var journey: Journey?
    @Published private(set) var rejected: [RejectedChange] = []
    @Published var problem: String?
    let device: CrewDevice
    let journeyId: String
    private var handle: ObserverHandle?

    init(device: CrewDevice, journeyId: String) {
        self.device = device
        self.journeyId = journeyId
        handle = try? device.observeJourney(journeyId: journeyId, observer: JourneyBridge { [weak self] journey, rejected in
            self?.journey = journey
            self?.rejected = rejected
        })
    }

    /// Crew actions are synchronous SQLite commits: run them off the main thread.
    func act(_ action: @escaping @Sendable (CrewDevice, String) throws -> Void) {
        let device = device, id = journeyId
        Task.detached {
            do {
                try action(device, id)
            } catch {
                await MainActor.run { self.problem = "\(error)" }
            }
        }
    }

    /// Captures are async: crewsync decodes, thumbnails and fsyncs on its own threads.
    func capturePhoto(path: String, gps: GpsPoint?) async {
        do {
            _ = try await device.capturePhoto(journeyId: journeyId, path: path,
                                              info: CaptureInfo(step: nil, activityId: nil, gps: gps, tag: nil, text: nil))
        } catch {
            problem = "\(error)"
        }
    }
}
