// The screens: sign-in, today's journeys, a journey (stage, steps, crew, entries,
// captures), with the status line on top.

import SwiftUI

struct RootView: View {
    @EnvironmentObject var session: CrewSession

    var body: some View {
        VStack(spacing: 0) {
            StatusLine(model: StatusModel(device: session.device))
            NavigationStack {
                if let user = session.user {
                    TodayView(model: TodayModel(device: session.device, locationId: user.locationId))
                } else {
                    SignInView()
                }
            }
        }
    }
}

struct StatusLine: View {
    @StateObject var model: StatusModel
    var body: some View {
        Text(model.line)
            .font(.footnote)
            .frame(maxWidth: .infinity, alignment: .leading)
            .padding(.horizontal).padding(.vertical, 6)
            .background(Color.secondary.opacity(0.15))
    }
}

struct SignInView: View {
    @EnvironmentObject var session: CrewSession
    @State private var email = ""
    @State private var password = ""

    var body: some View {
        Form {
            TextField("Email", text: $email).textContentType(.username).keyboardType(.emailAddress)
            SecureField("Password", text: $password)
            Button("Sign in") { Task { await session.signIn(email: email, password: password) } }
            if let problem = session.problem { Text(problem).foregroundStyle(.red) }
        }
        .navigationTitle("Crew")
    }
}

struct TodayView: View {
    @EnvironmentObject var session: CrewSession
    @StateObject var model: TodayModel

    var body: some View {
        List(model.journeys, id: \.id) { journey in
            NavigationLink(value: journey.id) {
                VStack(alignment: .leading) {
                    Text("Truck \(journey.truckNumber ?? "—") · \(String(describing: journey.stage))")
                    Text("\(journey.crew.count) crew · \(journey.photoCount) photos · \(journey.pendingChanges) pending")
                        .font(.caption).foregroundStyle(.secondary)
                }
            }
        }
        .navigationTitle("Today")
        .navigationDestination(for: String.self) { id in
            JourneyView(model: JourneyModel(device: session.device, journeyId: id))
        }
        .onAppear { model.refresh() }
        .refreshable { _ = try? await session.device.syncNow() }
    }
}

struct JourneyView: View {
    @StateObject var model: JourneyModel
    @State private var note = ""
    @State private var showCamera = false
    @State private var showSignature = false

    var body: some View {
        List {
            if let journey = model.journey {
                Section("Stage") {
                    Text(String(describing: journey.stage))
                    if let next = nextStage(journey.stage) {
                        Button("Move to \(String(describing: next))") {
                            model.act { device, id in try device.advanceStage(journeyId: id, to: next) }
                        }
                    }
                    ForEach(model.rejected, id: \.hash) { Text("Not accepted: \($0.reason)").foregroundStyle(.red) }
                    if let problem = model.problem { Text(problem).foregroundStyle(.red) }
                }
                Section("Steps") {
                    ForEach(journey.steps, id: \.number) { step in
                        HStack {
                            Text("\(step.number). \(step.name)")
                            Spacer()
                            switch step.status {
                            case .pending:
                                Button("Start") { model.act { d, id in try d.startStep(journeyId: id, step: step.number) } }
                            case .inProgress:
                                Button("Done") { model.act { d, id in try d.completeStep(journeyId: id, step: step.number) } }
                            case .completed:
                                Image(systemName: "checkmark")
                            }
                        }
                    }
                }
                Section("Crew") {
                    ForEach(journey.crew, id: \.userId) { Text("\(String(describing: $0.role)) · \($0.userId.prefix(8))") }
                }
                Section("Capture") {
                    TextField("Note", text: $note)
                    Button("Add note") {
                        let text = note
                        note = ""
                        model.act { d, id in _ = try d.addNote(journeyId: id, text: text) }
                    }
                    Button("GPS fix") {
                        guard let fix = Location.shared.lastFix else { model.problem = "no GPS fix yet"; return }
                        model.act { d, id in try d.recordGpsPoint(journeyId: id, point: fix) }
                    }
                    Button("Photo") { showCamera = true }
                    Button("Signature") { showSignature = true }
                }
                Section("Entries") {
                    ForEach(journey.entries.reversed(), id: \.id) { entry in
                        VStack(alignment: .leading) {
                            Text(String(describing: entry.kind) + (entry.tag.map { " [\($0)]" } ?? ""))
                            Text(entry.text ?? entry.mediaId.map { "media \($0.prefix(8))" } ?? "").font(.caption)
                        }
                    }
                }
            } else {
                Text("Loading…")
            }
        }
        .navigationTitle("Journey")
        .sheet(isPresented: $showCamera) {
            CameraPicker { path in
                Task {
                    await model.capturePhoto(path: path, gps: Location.shared.lastFix)
                    try? FileManager.default.removeItem(atPath: path) // crewsync keeps its copy
                }
            }
        }
        .sheet(isPresented: $showSignature) { SignatureView(model: model) }
    }

    private func nextStage(_ stage: Stage) -> Stage? {
        switch stage {
        case .morningPrep: return .enRoute
        case .enRoute: return .onsite
        case .onsite: return .completed
        case .completed, .audited: return nil
        }
    }
}
