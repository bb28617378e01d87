//! Device media figures: `cargo bench -p crewsync-core --bench media`.
//!
//! A 12-megapixel JPEG (4000×3000, gradients plus noise, quality 90 — compresses
//! like a photo, not like a flat fill) is made once; then, interleaved over rounds
//! so all three see the same machine state:
//! 1. the device thumbnail (`media::thumbnail::from_jpeg`: DCT-scaled decode,
//!    resize to 320 px, JPEG encode);
//! 2. the baseline: decode with downscaling alone (`jpeg-decoder` at 1/8 scale, the
//!    least any thumbnailer must do);
//! 3. the reference: full decode (`image`) + `fast_image_resize` to 320 px.
//!
//! Time is the median of the rounds; peak memory is the highest count of live heap
//! bytes during one run above what was live before it, measured by a counting
//! global allocator in this binary (the heap is what a phone's budget limits).
//! Goals (issue 5): device thumbnail ≤ 1.2× the baseline's time, ≤ 2× its memory.
//! Also: a signature PNG render, and a whole `capture_photo` into a store (original
//! written + fsynced, thumbnail, EXIF, one SQLite transaction).
#![allow(clippy::unwrap_used, unsafe_code)] // bench code; the allocator is unsafe by nature

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crewsync_core::media::signature::render_png;
use crewsync_core::media::thumbnail::{self, THUMBNAIL_EDGE, fit};
use crewsync_core::media::{ImageLimits, Stroke, StrokePoint};
use crewsync_core::model::{ActiveUser, Location, NewJourney, Role, Timestamp};
use crewsync_core::store::{CaptureInfo, MediaSource};
use crewsync_core::{DeviceStore, StoreOptions};
use fast_image_resize::images::Image as FirImage;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                    + (new_size - layout.size());
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` once; its time and its peak of live heap bytes above the start.
fn measure<T>(f: impl FnOnce() -> T) -> (Duration, usize, T) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let start = Instant::now();
    let out = f();
    let elapsed = start.elapsed();
    (
        elapsed,
        PEAK.load(Ordering::Relaxed).saturating_sub(base),
        out,
    )
}

fn photo(width: u32, height: u32) -> Vec<u8> {
    let mut state = 0x2545_F491u32;
    let image = RgbImage::from_fn(width, height, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let noise = (state % 40) as i32 - 20;
        let shade = |v: u32, span: u32| ((v * 200 / span) as i32 + 28 + noise).clamp(0, 255) as u8;
        image::Rgb([
            shade(x, width),
            shade(y, height),
            shade((x / 7 + y / 5) % 300, 300),
        ])
    });
    let mut out = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&image)
        .unwrap();
    out.into_inner()
}

/// The baseline: a DCT-scaled decode and nothing else.
fn baseline(path: &Path) -> usize {
    let mut decoder = jpeg_decoder::Decoder::new(BufReader::new(File::open(path).unwrap()));
    decoder
        .scale(THUMBNAIL_EDGE as u16, THUMBNAIL_EDGE as u16)
        .unwrap();
    decoder.decode().unwrap().len()
}

/// The reference: full decode, then a resize to the thumbnail box.
fn full_decode_resize(path: &Path) -> usize {
    let rgb = image::open(path).unwrap().into_rgb8();
    let (w, h) = (rgb.width(), rgb.height());
    let (tw, th) = fit(w, h, THUMBNAIL_EDGE);
    let source = FirImage::from_vec_u8(w, h, rgb.into_raw(), PixelType::U8x3).unwrap();
    let mut target = FirImage::new(tw, th, PixelType::U8x3);
    Resizer::new()
        .resize(
            &source,
            &mut target,
            &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3)),
        )
        .unwrap();
    target.into_vec().len()
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let rounds: usize = std::env::var("CREWSYNC_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("12mp.jpg");
    let bytes = photo(4000, 3000);
    std::fs::write(&path, &bytes).unwrap();
    println!(
        "media bench: 4000×3000 JPEG, {:.1} MiB, {rounds} rounds (median time, peak heap)",
        mib(bytes.len())
    );
    let limits = ImageLimits::default();
    // Warm-up: page cache, lazy statics, CPU feature detection.
    thumbnail::from_jpeg(&path, &limits).unwrap();
    baseline(&path);
    full_decode_resize(&path);

    let (mut device_t, mut base_t, mut full_t) = (Vec::new(), Vec::new(), Vec::new());
    let (mut device_m, mut base_m, mut full_m) = (0, 0, 0);
    let mut thumb_bytes = 0;
    for _ in 0..rounds {
        let (t, m, thumb) = measure(|| thumbnail::from_jpeg(&path, &limits).unwrap());
        device_t.push(t);
        device_m = device_m.max(m);
        thumb_bytes = thumb.jpeg.len();
        let (t, m, _) = measure(|| baseline(&path));
        base_t.push(t);
        base_m = base_m.max(m);
        let (t, m, _) = measure(|| full_decode_resize(&path));
        full_t.push(t);
        full_m = full_m.max(m);
    }
    let (device_t, base_t, full_t) = (median(device_t), median(base_t), median(full_t));
    println!(
        "  device thumbnail (DCT 1/8 + resize + JPEG encode): {:>7.1} ms  {:>6.1} MiB  → {} B JPEG",
        ms(device_t),
        mib(device_m),
        thumb_bytes
    );
    println!(
        "  baseline: DCT-scaled decode alone:                 {:>7.1} ms  {:>6.1} MiB",
        ms(base_t),
        mib(base_m)
    );
    println!(
        "  reference: full decode + Lanczos3 resize:          {:>7.1} ms  {:>6.1} MiB",
        ms(full_t),
        mib(full_m)
    );
    let time_ratio = device_t.as_secs_f64() / base_t.as_secs_f64();
    let mem_ratio = device_m as f64 / base_m.max(1) as f64;
    println!(
        "  device / baseline: time {time_ratio:.2}× (goal ≤ 1.2×: {}), memory {mem_ratio:.2}× (goal ≤ 2×: {})",
        if time_ratio <= 1.2 { "met" } else { "MISSED" },
        if mem_ratio <= 2.0 { "met" } else { "MISSED" },
    );
    println!(
        "  device / full decode + resize: time {:.2}×, memory {:.2}×",
        device_t.as_secs_f64() / full_t.as_secs_f64(),
        device_m as f64 / full_m.max(1) as f64
    );

    // A signature PNG.
    let strokes: Vec<Stroke> = (0..12)
        .map(|s| Stroke {
            points: (0..40)
                .map(|i| StrokePoint {
                    x: 20.0 + i as f32 * 14.0,
                    y: 60.0 + s as f32 * 10.0 + ((i * 37 + s * 11) % 29) as f32,
                    at: Timestamp(i64::from(i)),
                    pressure: Some(0.5),
                })
                .collect(),
        })
        .collect();
    let sig: Vec<Duration> = (0..rounds)
        .map(|_| measure(|| render_png(600, 240, &strokes).unwrap()).0)
        .collect();
    println!(
        "  signature PNG 600×240, 12 strokes:                 {:>7.2} ms",
        ms(median(sig))
    );

    // A whole capture into a store on a real disk.
    let store =
        DeviceStore::open(dir.path().join("device.sqlite"), StoreOptions::default()).unwrap();
    let location = Location {
        id: crewsync_core::ids::LocationId::new(),
        client_id: crewsync_core::ids::ClientId::new(),
        name: "BENCH".into(),
        timezone: "America/Toronto".into(),
    };
    store.upsert_location(&location).unwrap();
    let office = ActiveUser {
        user_id: crewsync_core::ids::UserId::new(),
        role: Role::Dispatcher,
    };
    store.set_active_user(Some(office)).unwrap();
    let journey = store
        .create_journey(&NewJourney {
            id: None,
            client_id: location.client_id,
            location_id: location.id,
            date: chrono::Utc::now().date_naive(),
            truck_number: None,
            move_source_id: None,
            steps_requiring_approval: Vec::new(),
        })
        .unwrap();
    let crew = crewsync_core::ids::UserId::new();
    store.assign_crew(journey, crew, Role::Driver).unwrap();
    store
        .set_active_user(Some(ActiveUser {
            user_id: crew,
            role: Role::Driver,
        }))
        .unwrap();
    let capture: Vec<(Duration, usize)> = (0..rounds)
        .map(|_| {
            let (t, m, _) = measure(|| {
                store
                    .capture_photo(
                        journey,
                        MediaSource::Path(path.clone()),
                        CaptureInfo::default(),
                    )
                    .unwrap()
            });
            (t, m)
        })
        .collect();
    let peak = capture.iter().map(|c| c.1).max().unwrap_or(0);
    println!(
        "  capture_photo 12 MP from a path (copy + fsync + thumbnail + EXIF + commit): {:.1} ms, {:.1} MiB peak",
        ms(median(capture.into_iter().map(|c| c.0).collect())),
        mib(peak)
    );
}
