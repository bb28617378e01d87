// Uploads while the app is not in front.
//
// crewsync uploads from its own threads while the app runs (the sync loop and
// `syncNow()`), through its own HTTP client. iOS suspends a backgrounded app within
// seconds, and a suspended process cannot upload; only a background URLSession, run
// by the system's nsurlsessiond, can carry a transfer on. So:
//
// 1. On entering the background the app suspends the device (no SQLite lock held)
//    and schedules a BGAppRefreshTask (`schedule()`).
// 2. When iOS grants it (minutes to hours later, on its own terms), `run` resumes the
//    device and calls `syncNow()` — documents, then the media queue — for as long as
//    the task's budget allows (about 30 s), then suspends again. Most queues (photos
//    of a day, signatures) finish in a few such windows.
// 3. For long uploads (videos) that cannot finish in those windows, the platform's
//    answer is a background `URLSessionConfiguration.background(withIdentifier:)`
//    upload *from a file*. crewsync's resumable protocol allows a hand-off: the app
//    would ask crewsync for the item (`uploadQueue()`: file, size, SHA-256), create or
//    resume the upload session on the server, give the remaining byte range of the
//    file to the background URLSession, and on completion (delivered to the app
//    delegate's `handleEventsForBackgroundURLSession`) tell crewsync it is done so
//    the queue marks the item. That hand-off needs two calls crewsync-ffi does not
//    export yet (the server upload URL for an item, and "mark done" after the server
//    confirms); it is not built in this demo.

import BackgroundTasks
import Foundation

enum BackgroundUpload {
    /// Must also be listed in Info.plist under BGTaskSchedulerPermittedIdentifiers.
    static let refreshTask = "crewsync.upload"

    static func schedule() {
        let request = BGAppRefreshTaskRequest(identifier: refreshTask)
        request.earliestBeginDate = Date(timeIntervalSinceNow: 15 * 60)
        try? BGTaskScheduler.shared.submit(request)
    }

    /// One background window: resume, sync and upload, suspend. Cancelling the task
    /// (iOS ends the window) cancels the wait; crewsync finishes the write in progress.
    @MainActor
    static func run(session: CrewSession) async {
        let device = session.device
        do {
            try await device.resume()
            _ = try await device.syncNow()
        } catch {
            // Network or auth trouble: the queue is durable; try in the next window.
        }
        let left = (try? device.mediaProgress())?.pendingItems ?? 0
        try? await device.suspend()
        if left > 0 { schedule() }
    }
}
