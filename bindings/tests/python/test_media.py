"""Media through the generated Python bindings, against a real server: photos (real
JPEGs made with Pillow) and signatures captured offline, the upload queue and its
observer, the errors an app acts on, and threads capturing at once."""

import hashlib
import io
import os
import random
import struct
import threading
import zlib

import pytest
from PIL import Image

import crewsync_ffi as ffi
from conftest import PASSWORD, UploadRecorder, dead_url, eventually, now_ms, run


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def jpeg(width=320, height=240, seed=0):
    """A real JPEG: gradients plus noise, so it compresses like a photo."""
    rng = random.Random(seed)
    pixels = []
    for y in range(height):
        for x in range(width):
            n = rng.randrange(48)
            pixels.append((min(255, x * 255 // width + n), min(255, y * 255 // height + n // 2),
                           min(255, (x + y) * 127 // (width + height) + n)))
    image = Image.new("RGB", (width, height))
    image.putdata(pixels)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def png_bomb():
    """A small PNG whose header declares 60000×60000 pixels."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(bytes(65_536))) + chunk(b"IEND", b""))


def strokes(offset=0):
    t = now_ms()
    return [ffi.Stroke(points=[
        ffi.StrokePoint(x=10.0 + i * 8, y=60.0 + ((i + offset) % 5) * 6, at_ms=t + i * 16,
                        pressure=0.5)
        for i in range(30)])]


def signature(consent=True, drawn=None, step=None):
    return ffi.SignatureCapture(
        signer_name="Ada Customer", signer_role=ffi.SignerRole.CUSTOMER,
        document="bill_of_lading", document_sha256=sha256(b"BOL v1"), consent=consent,
        canvas_width=300, canvas_height=120, strokes=strokes() if drawn is None else drawn,
        step=step, gps=None)


def signed_in(open_device, url, name="media"):
    device = open_device(url, name)
    user = run(device.sign_in("driver@lgm.example", PASSWORD))
    return device, user


def test_photos_and_a_signature_captured_offline_reach_the_server(
        server, dispatcher, open_device, tmp_path):
    driver, user = signed_in(open_device, server.url, "offline-media")
    journey = dispatcher.new_journey(crew=[user.user_id])
    run(driver.sync_now())
    driver.shutdown()

    # The same store with the network gone.
    offline = ffi.CrewDevice.open(str(tmp_path / "offline-media.sqlite"), dead_url())
    heard = UploadRecorder()
    handle = offline.observe_uploads(heard)
    eventually("the current queue first", lambda: len(heard.all()) >= 1)
    assert heard.all()[0].queue.pending_items == 0
    photos = [jpeg(seed=i) for i in range(2)]
    camera = tmp_path / "camera.jpg"
    camera.write_bytes(photos[0])
    first = run(offline.capture_photo(journey, str(camera), ffi.CaptureInfo(step=2, tag="BR")))
    second = run(offline.capture_photo_bytes(journey, photos[1], ffi.CaptureInfo()))
    signed = run(offline.capture_signature(journey, signature()))
    assert [first.sha256, second.sha256] == [sha256(p) for p in photos]
    assert (first.width, first.height) == (320, 240)
    assert camera.read_bytes() == photos[0], "the camera's file is copied, not moved"
    eventually("the observer hears 5 pending (2 photos, 2 thumbnails, 1 signature)",
               lambda: heard.all()[-1].queue.pending_items == 5)
    assert offline.media_progress().pending_items == 5
    assert {i.kind for i in offline.upload_queue()} == {
        ffi.UploadKind.PHOTO, ffi.UploadKind.THUMBNAIL, ffi.UploadKind.SIGNATURE}
    media = {m.id: m for m in offline.journey(journey).media}
    assert media[signed.id].signature.signer_name == "Ada Customer"
    assert media[first.id].entry is not None
    with pytest.raises(ffi.CrewsyncError.Network):
        run(offline.sync_now())
    handle.cancel()
    offline.shutdown()

    back = open_device(server.url, "offline-media")
    outcome = run(back.sync_now())
    assert back.pending_changes() == 0
    office = dispatcher.journey(journey)
    assert {first.id, second.id, signed.id} <= {m["id"] for m in office["media"]}
    assert outcome.media.uploaded == 5, outcome.media
    assert back.media_progress().pending_items == 0
    for ref, data in ((first, photos[0]), (second, photos[1])):
        status, body = dispatcher.media(ref.id)
        assert status == 200 and sha256(body) == sha256(data)
    status, body = dispatcher.media(signed.id)
    assert status == 200 and sha256(body) == signed.sha256
    assert back.sync_status().media.pending_items == 0


def test_errors_an_app_acts_on(server, dispatcher, open_device, tmp_path):
    driver, user = signed_in(open_device, server.url, "media-errors")
    journey = dispatcher.new_journey(crew=[user.user_id])
    run(driver.sync_now())
    before = driver.media_progress()

    with pytest.raises(ffi.CrewsyncError.InvalidInput):
        run(driver.capture_photo_bytes(journey, b"GIF89a" + bytes(64), ffi.CaptureInfo()))
    with pytest.raises(ffi.CrewsyncError.InvalidInput):
        run(driver.capture_photo_bytes(journey, png_bomb(), ffi.CaptureInfo()))
    whole = jpeg(seed=5)
    with pytest.raises(ffi.CrewsyncError.InvalidInput):  # truncated
        run(driver.capture_photo_bytes(journey, whole[:len(whole) // 2], ffi.CaptureInfo()))
    with pytest.raises(ffi.CrewsyncError.InvalidInput):  # a photo named .mp4 is no video
        run(driver.capture_video(journey, _write(tmp_path, "photo.mp4", jpeg()),
                                 ffi.CaptureInfo()))
    with pytest.raises(ffi.CrewsyncError.InvalidInput):
        run(driver.capture_signature(journey, signature(consent=False)))
    with pytest.raises(ffi.CrewsyncError.InvalidInput):
        run(driver.capture_signature(journey, signature(drawn=[])))
    with pytest.raises(ffi.CrewsyncError.InvalidInput):
        run(driver.capture_photo_bytes(journey, jpeg(), ffi.CaptureInfo(step=9)))
    with pytest.raises(ffi.CrewsyncError.InvalidInput):
        driver.retry_media("no-such-item")
    assert driver.media_progress() == before, "refused captures store nothing"

    # Evidence: removable until its step is signed off, then not for crews.
    loose = run(driver.capture_photo_bytes(journey, jpeg(seed=7), ffi.CaptureInfo(step=1)))
    driver.remove_media(journey, loose.id)
    removed = next(m for m in driver.journey(journey).media if m.id == loose.id)
    assert removed.removed is not None and removed.removed.by == user.user_id
    kept = run(driver.capture_photo_bytes(journey, jpeg(seed=8), ffi.CaptureInfo(step=1)))
    run(driver.capture_signature(journey, signature(step=1)))
    with pytest.raises(ffi.CrewsyncError.NotAllowed):
        driver.remove_media(journey, kept.id)

    refusal = driver.record_signature_refusal(journey, ffi.SignatureRefusal(
        signer_name="Bo Customer", signer_role=ffi.SignerRole.CUSTOMER, document="inventory",
        document_sha256=sha256(b"inv"), reason="Will sign at delivery", step=None, gps=None))
    assert refusal.sha256 is None and refusal.signature.refused == "Will sign at delivery"
    with pytest.raises(ffi.CrewsyncError.InvalidInput):
        driver.record_signature_refusal(journey, ffi.SignatureRefusal(
            signer_name="Bo", signer_role=ffi.SignerRole.CUSTOMER, document="inventory",
            document_sha256="not-a-hash", reason="no", step=None, gps=None))


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_a_missing_file_is_reported_and_can_be_retried(server, dispatcher, open_device, tmp_path):
    driver, user = signed_in(open_device, server.url, "problems")
    journey = dispatcher.new_journey(crew=[user.user_id])
    run(driver.sync_now())
    driver.set_network_type(ffi.NetworkType.OFFLINE)  # keep it queued
    photo = run(driver.capture_photo_bytes(journey, jpeg(seed=3), ffi.CaptureInfo()))
    assert driver.media_problems() == []
    driver.shutdown()
    media_dir = tmp_path / "problems.sqlite.media"
    original = [n for n in os.listdir(media_dir) if n.startswith(photo.id) and "thumb" not in n]
    assert len(original) == 1, os.listdir(media_dir)
    os.remove(media_dir / original[0])

    reopened = open_device(dead_url(), "problems")
    problems = reopened.media_problems()
    assert len(problems) == 1 and "missing" in problems[0].reason
    assert reopened.media_progress().set_aside_items == 1
    item = next(i for i in reopened.upload_queue() if i.item_id == problems[0].item_id)
    assert item.state == ffi.UploadState.SET_ASIDE and item.media_id == photo.id
    reopened.retry_media(item.item_id)
    assert reopened.media_progress().set_aside_items == 0


def test_upload_observers_start_with_the_queue_and_stop_when_cancelled(
        server, dispatcher, open_device):
    driver, user = signed_in(open_device, server.url, "observers")
    journey = dispatcher.new_journey(crew=[user.user_id])
    run(driver.sync_now())
    driver.set_network_type(ffi.NetworkType.OFFLINE)
    kept, cancelled = UploadRecorder(), UploadRecorder()
    kept_handle = driver.observe_uploads(kept)
    cancelled_handle = driver.observe_uploads(cancelled)
    eventually("both get the current queue", lambda: len(kept.all()) == len(cancelled.all()) == 1)
    cancelled_handle.cancel()
    run(driver.capture_photo_bytes(journey, jpeg(seed=4), ffi.CaptureInfo()))
    eventually("the kept observer hears the capture",
               lambda: kept.all()[-1].queue.pending_items == 2)
    assert len(cancelled.all()) == 1
    kept_handle.cancel()


def test_threads_capture_at_once(server, dispatcher, open_device):
    driver, user = signed_in(open_device, server.url, "threads-media")
    journey = dispatcher.new_journey(crew=[user.user_id])
    run(driver.sync_now())
    images = {(w, i): jpeg(seed=w * 10 + i) for w in range(4) for i in range(3)}
    captured, failures = [], []
    lock = threading.Lock()

    def capture(worker):
        try:
            for i in range(3):
                ref = run(driver.capture_photo_bytes(
                    journey, images[(worker, i)], ffi.CaptureInfo(text=f"w{worker} p{i}")))
                with lock:
                    captured.append((ref, images[(worker, i)]))
                driver.add_note(journey, f"worker {worker} photo {i}")
        except Exception as e:  # noqa: BLE001 - any failure fails the test below
            failures.append(e)

    def sign():
        try:
            for i in range(2):
                run(driver.capture_signature(journey, signature(drawn=strokes(i))))
        except Exception as e:  # noqa: BLE001
            failures.append(e)

    def sync():
        try:
            for _ in range(3):
                run(driver.sync_now())
        except Exception as e:  # noqa: BLE001
            failures.append(e)

    threads = [threading.Thread(target=capture, args=(w,)) for w in range(4)]
    threads += [threading.Thread(target=sign), threading.Thread(target=sync)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(captured) == 12
    assert all(ref.sha256 == sha256(data) for ref, data in captured)
    media = driver.journey(journey).media
    assert len(media) == 14 and len({m.id for m in media}) == 14
    run(driver.sync_now())
    assert driver.pending_changes() == 0
    office = dispatcher.journey(journey)
    assert len(office["media"]) == 14
    assert len(office["notes"]) == 12
    assert driver.media_progress().pending_items == 0
    for ref, data in captured:
        status, body = dispatcher.media(ref.id)
        assert status == 200 and sha256(body) == sha256(data), (status, ref.id)


def test_the_network_hint_holds_uploads_until_a_network_is_usable(server, dispatcher, open_device):
    driver, user = signed_in(open_device, server.url, "hint")
    journey = dispatcher.new_journey(crew=[user.user_id])
    run(driver.sync_now())
    driver.set_network_type(ffi.NetworkType.OFFLINE)
    data = jpeg(seed=11)
    ref = run(driver.capture_photo_bytes(journey, data, ffi.CaptureInfo()))
    outcome = run(driver.sync_now())  # the entry goes; the files wait for a network
    assert outcome.media.uploaded == 0 and driver.media_progress().pending_items == 2
    assert dispatcher.media(ref.id)[0] != 200, "control: the server does not have it yet"
    driver.set_network_type(ffi.NetworkType.CELLULAR)
    outcome = run(driver.upload_media())
    assert outcome.uploaded == 2 and outcome.progress.pending_items == 0, outcome
    status, body = dispatcher.media(ref.id)
    assert status == 200 and sha256(body) == sha256(data)


def test_a_capture_does_not_block_the_callers_event_loop(server, dispatcher, open_device):
    """The capture decodes and thumbnails a 12 MP photo on crewsync's threads: the
    caller's event loop keeps running meanwhile. Were the call blocking, the capture
    would finish inside its first step and the ticker would never see it pending."""
    import asyncio

    driver, user = signed_in(open_device, server.url, "nonblocking")
    journey = dispatcher.new_journey(crew=[user.user_id])
    run(driver.sync_now())
    big = io.BytesIO()
    Image.effect_noise((4000, 3000), 64).convert("RGB").save(big, "JPEG", quality=90)
    state = {"done": False, "ticks": 0}

    async def capture():
        ref = await driver.capture_photo_bytes(journey, big.getvalue(), ffi.CaptureInfo())
        state["done"] = True
        return ref

    async def ticker():
        while not state["done"]:
            state["ticks"] += 1
            await asyncio.sleep(0)

    async def both():
        return await asyncio.gather(capture(), ticker())

    ref, _ = asyncio.run(both())
    assert (ref.width, ref.height) == (4000, 3000)
    assert state["ticks"] > 0
