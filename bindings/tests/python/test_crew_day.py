"""A crew's day through the generated Python bindings, against a real server."""

import gc
import os
import threading

import pytest

import crewsync_ffi as ffi
from conftest import (PASSWORD, JourneyRecorder, StatusRecorder, dead_url, eventually,
                      now_ms, run, today)


def signed_in(open_device, url, email="driver@lgm.example", name="device"):
    device = open_device(url, name)
    user = run(device.sign_in(email, PASSWORD))
    return device, user


def gps(i):
    return ffi.GpsPoint(lat=43.25 + i * 0.001, lon=-79.87, accuracy_m=5.0, at_ms=now_ms() + i)


def test_the_library_answers():
    assert ffi.core_version()


def test_a_crew_day_reaches_the_server(server, dispatcher, open_device):
    driver, user = signed_in(open_device, server.url)
    assert user.role == ffi.Role.DRIVER
    assert driver.signed_in_user().user_id == user.user_id
    journey = dispatcher.new_journey(crew=[user.user_id])
    run(driver.sync_now())

    assert journey in [j.id for j in driver.list_journeys(dispatcher.location_id, today())]
    driver.upsert_location(ffi.Location(id=dispatcher.location_id, client_id=user.tenant_id,
                                        name="Home", timezone="Etc/UTC"))
    assert journey in [j.id for j in driver.list_journeys_today(dispatcher.location_id)]
    read = driver.journey(journey)
    assert read.stage == ffi.Stage.MORNING_PREP
    assert user.user_id in [c.user_id for c in read.crew]

    driver.start_step(journey, 1)
    checklist = driver.add_checklist(journey, 1, "Truck check", ["tires", "straps"])
    activity = next(a for a in driver.journey(journey).steps[0].activities if a.id == checklist)
    tires = next(i.key for i in activity.checklist if i.label == "tires")
    driver.set_checklist_item(journey, 1, checklist, tires, True)
    driver.complete_step(journey, 1)
    driver.advance_stage(journey, ffi.Stage.EN_ROUTE)
    driver.add_note(journey, "Left the depot")
    driver.add_entry(journey, ffi.NewEntry(kind=ffi.EntryKind.NOTE, tag="BR", text="Broken lamp",
                                           location=gps(0), stage=None, step=2, media_id=None))
    driver.add_activity(journey, 2, ffi.ActivityKind.NOTE, "Access", "Back door only")
    driver.set_times(journey, now_ms(), None)
    for i in range(5):
        driver.record_gps_point(journey, gps(i))
    driver.add_gps_points(journey, [gps(10), gps(11), gps(12)])
    assert len(driver.gps_track(journey)) == 8
    driver.flush_gps(journey)
    assert driver.pending_changes() > 0

    outcome = run(driver.sync_now())
    assert outcome.pending == 0 and driver.pending_changes() == 0

    office = dispatcher.journey(journey)
    assert office["stage"] == "EN_ROUTE"
    assert "Left the depot" in [n["text"] for n in office["notes"]]
    assert "Broken lamp" in [e.get("text") for e in office["entries"]]
    assert office["gps_point_count"] == 8
    assert office["steps"][0]["status"] == "COMPLETED"


def test_work_done_offline_syncs_after_reconnecting(server, dispatcher, open_device, tmp_path):
    driver, user = signed_in(open_device, server.url)
    journey = dispatcher.new_journey(crew=[user.user_id])
    run(driver.sync_now())
    driver.shutdown()

    # The same store, with the network gone: the sign-in is remembered, work is kept.
    offline = ffi.CrewDevice.open(str(tmp_path / "device.sqlite"), dead_url())
    assert offline.signed_in_user().user_id == user.user_id
    offline.advance_stage(journey, ffi.Stage.EN_ROUTE)
    offline.add_note(journey, "Written in a basement")
    for i in range(3):
        offline.record_gps_point(journey, gps(i))
    with pytest.raises(ffi.CrewsyncError.Network):
        run(offline.sync_now())
    assert offline.pending_changes() >= 2
    assert offline.sync_status().last_error is not None
    offline.shutdown()

    back = open_device(server.url, "device")
    run(back.sync_now())
    assert back.pending_changes() == 0
    office = dispatcher.journey(journey)
    assert office["stage"] == "EN_ROUTE"
    assert "Written in a basement" in [n["text"] for n in office["notes"]]


def test_a_second_device_sees_the_change_and_its_observer_fires(server, dispatcher, open_device):
    driver, driver_user = signed_in(open_device, server.url, name="driver")
    mover, mover_user = signed_in(open_device, server.url, "mover@lgm.example", name="mover")
    journey = dispatcher.new_journey(crew=[driver_user.user_id, mover_user.user_id])
    run(driver.sync_now())
    run(mover.sync_now())

    heard = JourneyRecorder()
    handle = mover.observe_journey(journey, heard)
    eventually("the current state first", lambda: len(heard.all()) >= 1)
    first, rejected = heard.all()[0]
    assert first.id == journey and first.notes == [] and rejected == []

    driver.add_note(journey, "Piano on the third floor")
    run(driver.sync_now())
    run(mover.sync_now())
    eventually("the driver's note reaches the mover's observer",
               lambda: any("Piano on the third floor" in [n.text for n in j.notes]
                           for j, _ in heard.all()))
    handle.cancel()
    assert handle.is_cancelled()


def test_cancelled_and_dropped_observers_hear_nothing_more(server, dispatcher, open_device):
    driver, user = signed_in(open_device, server.url)
    journey = dispatcher.new_journey(crew=[user.user_id])
    run(driver.sync_now())
    kept, cancelled, dropped = JourneyRecorder(), JourneyRecorder(), JourneyRecorder()
    kept_handle = driver.observe_journey(journey, kept)
    cancelled_handle = driver.observe_journey(journey, cancelled)
    dropped_handle = driver.observe_journey(journey, dropped)
    for recorder in (kept, cancelled, dropped):
        eventually("the first delivery", lambda r=recorder: len(r.all()) == 1)

    cancelled_handle.cancel()
    del dropped_handle
    gc.collect()
    driver.add_note(journey, "After the cancel")
    # The kept observer is the control: the same change is delivered to it.
    eventually("the kept observer hears the note", lambda: len(kept.all()) == 2)
    driver.add_note(journey, "Second after the cancel")
    eventually("the kept observer hears the second note", lambda: len(kept.all()) == 3)
    assert len(cancelled.all()) == 1
    assert len(dropped.all()) == 1
    kept_handle.cancel()


def test_the_sync_status_observer_gets_the_current_state_then_changes(server, dispatcher, open_device):
    driver, user = signed_in(open_device, server.url)
    heard = StatusRecorder()
    handle = driver.observe_sync_status(heard)
    eventually("the current status first", lambda: len(heard.all()) >= 1)
    assert heard.all()[0].last_success_ms is None
    run(driver.sync_now())
    eventually("a status after the sync",
               lambda: any(s.last_success_ms is not None and not s.syncing for s in heard.all()))
    handle.cancel()


def test_background_sync_pushes_a_local_action(server, dispatcher, open_device):
    driver, user = signed_in(open_device, server.url)
    journey = dispatcher.new_journey(crew=[user.user_id])
    run(driver.sync_now())
    driver.start_background_sync(60_000)
    driver.add_note(journey, "Pushed by the background loop")
    # A local action wakes the loop; no sync_now here.
    eventually("the note reaches the server",
               lambda: "Pushed by the background loop" in
               [n["text"] for n in dispatcher.journey(journey)["notes"]])
    run(driver.stop_background_sync())


def test_network_type_hint_is_kept_and_pauses_background_sync(server, open_device):
    driver, _ = signed_in(open_device, server.url)
    assert driver.network_type() == ffi.NetworkType.UNKNOWN
    driver.set_network_type(ffi.NetworkType.OFFLINE)
    assert driver.network_type() == ffi.NetworkType.OFFLINE
    assert driver.sync_status().paused
    driver.set_network_type(ffi.NetworkType.CELLULAR)
    assert driver.network_type() == ffi.NetworkType.CELLULAR
    assert not driver.sync_status().paused


def test_each_error_variant(server, dispatcher, open_device, tmp_path):
    device = open_device(server.url, "errors")
    with pytest.raises(ffi.CrewsyncError.Auth):
        run(device.sign_in("driver@lgm.example", "wrong password"))
    with pytest.raises(ffi.CrewsyncError.Auth):
        run(device.sync_now())
    user = run(device.sign_in("driver@lgm.example", PASSWORD))
    journey = dispatcher.new_journey(crew=[user.user_id])
    run(device.sync_now())
    with pytest.raises(ffi.CrewsyncError.InvalidInput):
        device.journey("not-a-uuid")
    device.advance_stage(journey, ffi.Stage.ONSITE)
    with pytest.raises(ffi.CrewsyncError.InvalidInput):
        device.advance_stage(journey, ffi.Stage.EN_ROUTE)
    with pytest.raises(ffi.CrewsyncError.InvalidInput):
        device.start_step(journey, 9)
    with pytest.raises(ffi.CrewsyncError.NotAllowed):
        device.assign_crew(journey, user.user_id, ffi.Role.MOVER)
    with pytest.raises(ffi.CrewsyncError.NotAllowed):
        device.approve_step(journey, 1, None)

    unreachable = ffi.CrewDevice.open(str(tmp_path / "unreachable.sqlite"), dead_url())
    with pytest.raises(ffi.CrewsyncError.Network):
        run(unreachable.sign_in("driver@lgm.example", PASSWORD))
    unreachable.shutdown()
    with pytest.raises(ffi.CrewsyncError.Other):
        unreachable.journey_ids()


def test_a_full_disk_is_storage_full():
    full = os.environ.get("CREWSYNC_FULL_DIR")
    if not full:
        pytest.skip("no small disk: run through bindings/tests/with-small-disk")
    device = ffi.CrewDevice.open(os.path.join(full, "full.sqlite"), dead_url())
    client = "0192f1c4-0000-7000-8000-0000000000c1"
    with pytest.raises(ffi.CrewsyncError.StorageFull):
        for i in range(5_000):
            device.upsert_location(ffi.Location(
                id=f"0192f1c4-0000-7000-8000-{i:012d}", client_id=client,
                name="x" * 20_000, timezone="Etc/UTC"))
    # Control of sorts: the store still answers after refusing the write.
    assert device.journey_ids() == []
    with pytest.raises(ffi.CrewsyncError.StorageFull):
        device.shutdown()  # closing checkpoints, which needs room too


def test_threads_call_in_concurrently(server, dispatcher, open_device):
    driver, user = signed_in(open_device, server.url)
    journey = dispatcher.new_journey(crew=[user.user_id])
    run(driver.sync_now())
    failures = []

    def write(worker):
        try:
            for i in range(15):
                driver.add_note(journey, f"worker {worker} note {i}")
                driver.record_gps_point(journey, gps(worker * 100 + i))
                driver.journey(journey)
        except Exception as e:  # noqa: BLE001 - any failure fails the test below
            failures.append(e)

    def sync():
        try:
            for _ in range(5):
                run(driver.sync_now())
        except Exception as e:  # noqa: BLE001
            failures.append(e)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(6)]
    threads.append(threading.Thread(target=sync))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    driver.flush_gps(journey)
    run(driver.sync_now())
    assert driver.pending_changes() == 0
    office = dispatcher.journey(journey)
    assert len(office["notes"]) == 6 * 15
    assert office["gps_point_count"] == 6 * 15


def open_files(path):
    """The files of the store (database, WAL, shm) this process has open: an open file
    is what a lock needs, so none open means none held."""
    path = os.path.realpath(path)
    names = {path, path + "-wal", path + "-shm"}
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target in names:
            found.append(target)
    return found


def test_suspend_lets_go_of_the_file_and_resume_carries_on(server, dispatcher, open_device, tmp_path):
    driver, user = signed_in(open_device, server.url, name="suspend")
    journey = dispatcher.new_journey(crew=[user.user_id])
    run(driver.sync_now())
    path = str(tmp_path / "suspend.sqlite")
    assert open_files(path), "control: the open store's files are seen"
    run(driver.suspend())
    assert driver.is_suspended()
    assert open_files(path) == []
    with pytest.raises(ffi.CrewsyncError.Other):
        driver.add_note(journey, "while suspended")
    run(driver.resume())
    driver.add_note(journey, "after resuming")
    run(driver.sync_now())
    assert "after resuming" in [n["text"] for n in dispatcher.journey(journey)["notes"]]


def test_sign_out_ends_the_session_and_keeps_nobody_signed_in(server, open_device):
    driver, _ = signed_in(open_device, server.url)
    assert run(driver.sign_out()) is True
    assert driver.signed_in_user() is None
    with pytest.raises(ffi.CrewsyncError.Auth):
        run(driver.sync_now())
    run(driver.sign_in("driver@lgm.example", PASSWORD))
    run(driver.sync_now())


def test_a_refused_change_is_visible_with_its_reason(server, dispatcher, open_device):
    mover, user = signed_in(open_device, server.url, "mover@lgm.example")
    journey = dispatcher.new_journey(crew=[user.user_id])
    run(mover.sync_now())
    heard = JourneyRecorder()
    handle = mover.observe_journey(journey, heard)
    eventually("the first delivery", lambda: len(heard.all()) == 1)
    # The office takes the mover off while the mover's device has not heard yet.
    dispatcher.unassign(journey, user.user_id)
    mover.add_note(journey, "Written after being taken off")
    run(mover.sync_now())
    rejected = mover.rejected_changes(journey)
    assert len(rejected) == 1, rejected
    assert "crew" in rejected[0].reason
    assert "Written after being taken off" not in [
        n["text"] for n in dispatcher.journey(journey)["notes"]]
    handle.cancel()
