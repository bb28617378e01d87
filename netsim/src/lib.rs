//! A fault proxy on loopback between devices and the server (reliability.md §B, E1):
//! per connection it can reset, swallow or cut the server's answer, or cut the
//! device's request after a number of bytes (a connection lost mid-upload); for all
//! connections at once it can stall (black hole) or drop the link, and it can drip
//! bytes a few at a time. Seeded: the same seed makes the same faults.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What a connection's answers (server to device) go through (B1, B2).
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    Pass,
    /// Close the connection before anything reaches the server.
    Reset,
    /// Forward the request, drop the server's answer, then close: the server has
    /// committed and acknowledged, the device never hears it.
    SwallowResponse,
    /// Forward the request, pass part of the answer, then close.
    CutResponse(usize),
    /// Pass this many bytes of the request, then close both ways.
    CutRequest(usize),
}

/// What the link does to every connection at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Up,
    /// A black hole (elevator, basement): nothing passes, not even a close, and
    /// nothing is closed; held bytes flow on once the link is up again.
    Stalled,
    /// Open connections are cut and new ones closed at once.
    Down,
}

#[derive(Debug, Clone, Copy)]
struct LinkState {
    link: Link,
    /// Cuts so far: a connection dies with the first cut after it opened, even if
    /// the link is up again before the connection looks.
    cuts: u64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Shaping {
    /// B1/B2: a seeded [`Fault`] per connection.
    pub connection_faults: bool,
    /// B5: every write sliced into 1–16-byte pieces, 1–5 ms apart, both directions.
    pub drip: bool,
    /// E1: on this share of connections (percent), cut the request after a
    /// seeded number of bytes below `cut_request_below`.
    pub request_cuts: u8,
    pub cut_request_below: usize,
}

#[derive(Debug, Default)]
pub struct ProxyStats {
    pub connections: AtomicU64,
    pub faulted: AtomicU64,
    pub slices: AtomicU64,
    /// Bytes forwarded, both ways.
    pub bytes: AtomicU64,
    /// Bytes forwarded from devices to the server.
    pub request_bytes: AtomicU64,
}

/// A TCP proxy on loopback between devices and the server.
pub struct Proxy {
    addr: SocketAddr,
    link: watch::Sender<LinkState>,
    stats: Arc<ProxyStats>,
}

impl Proxy {
    /// Listens on a free loopback port; `upstream` is the server.
    pub async fn start(upstream: SocketAddr, seed: u64, shaping: Shaping) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (link, _) = watch::channel(LinkState {
            link: Link::Up,
            cuts: 0,
        });
        let stats = Arc::new(ProxyStats::default());
        let (links, counts) = (link.clone(), Arc::clone(&stats));
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let fault = if shaping.request_cuts > 0
                    && rng.random_range(0..100u8) < shaping.request_cuts
                {
                    Fault::CutRequest(rng.random_range(0..shaping.cut_request_below.max(1)))
                } else if shaping.connection_faults {
                    match rng.random_range(0..100) {
                        0..50 => Fault::Pass,
                        50..65 => Fault::Reset,
                        65..85 => Fault::SwallowResponse,
                        _ => Fault::CutResponse(rng.random_range(0..200)),
                    }
                } else {
                    Fault::Pass
                };
                if !matches!(fault, Fault::Pass) {
                    counts.faulted.fetch_add(1, Ordering::Relaxed);
                }
                counts.connections.fetch_add(1, Ordering::Relaxed);
                let drip = shaping.drip.then(|| rng.random::<u64>());
                let connection = Connection {
                    fault,
                    drip,
                    link: links.subscribe(),
                    stats: Arc::clone(&counts),
                };
                tokio::spawn(connection.relay(client, upstream));
            }
        });
        Ok(Self { addr, link, stats })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, link: Link) {
        self.link.send_modify(|state| {
            if link == Link::Down && state.link != Link::Down {
                state.cuts += 1;
            }
            state.link = link;
        });
    }

    pub fn stat(&self, read: impl Fn(&ProxyStats) -> &AtomicU64) -> u64 {
        read(&self.stats).load(Ordering::Relaxed)
    }
}

struct Connection {
    fault: Fault,
    /// Seed for the slicing, when dripping.
    drip: Option<u64>,
    link: watch::Receiver<LinkState>,
    stats: Arc<ProxyStats>,
}

impl Connection {
    async fn relay(self, client: TcpStream, upstream: SocketAddr) {
        let mut link = self.link;
        let born = link.borrow().cuts;
        if matches!(self.fault, Fault::Reset) || !passable(&mut link, born).await {
            return; // closed before the request reaches the server
        }
        let Ok(server) = TcpStream::connect(upstream).await else {
            return;
        };
        // Each slice leaves as its own segment, so the far side reads it alone.
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let slicer = |salt: u64| self.drip.map(|seed| StdRng::seed_from_u64(seed ^ salt));
        let (request_fault, answer_fault) = match self.fault {
            Fault::CutRequest(n) => (Fault::CutRequest(n), Fault::Pass),
            other => (Fault::Pass, other),
        };
        let requests = Pump {
            fault: request_fault,
            requests: true,
            drip: slicer(0),
            link: link.clone(),
            born,
            stats: Arc::clone(&self.stats),
        };
        let answers = Pump {
            fault: answer_fault,
            requests: false,
            drip: slicer(1),
            link,
            born,
            stats: self.stats,
        };
        let cuts_request = matches!(request_fault, Fault::CutRequest(_));
        let requests = tokio::spawn(requests.run(client_read, server_write));
        if cuts_request {
            // The cut request ends the connection: both halves close with it.
            let _ = requests.await;
            drop(client_write);
            drop(server_read);
            return;
        }
        // The answers decide when the connection ends: dropping our halves closes it.
        answers.run(server_read, client_write).await;
        requests.abort();
    }
}

/// Moves bytes one way through the link.
struct Pump {
    fault: Fault,
    /// Device to server.
    requests: bool,
    drip: Option<StdRng>,
    link: watch::Receiver<LinkState>,
    born: u64,
    stats: Arc<ProxyStats>,
}

impl Pump {
    async fn run(mut self, mut from: OwnedReadHalf, mut to: OwnedWriteHalf) {
        let mut passed = 0;
        let mut buffer = [0u8; 4096];
        loop {
            let read = async {
                match self.fault {
                    Fault::Pass => from.read(&mut buffer).await.ok(),
                    // One answer per connection matters here; stop at the first quiet moment.
                    _ => tokio::time::timeout(Duration::from_millis(300), from.read(&mut buffer))
                        .await
                        .ok()
                        .and_then(Result::ok),
                }
            };
            let read = tokio::select! {
                read = read => read,
                () = cut(&mut self.link, self.born) => return,
            };
            // Nothing crosses a stalled link, not even the end of the stream.
            if !passable(&mut self.link, self.born).await {
                return;
            }
            let Some(n) = read.filter(|&n| n > 0) else {
                let _ = to.shutdown().await;
                return;
            };
            let take = match self.fault {
                Fault::Pass | Fault::Reset => n,
                Fault::SwallowResponse => 0,
                Fault::CutResponse(limit) | Fault::CutRequest(limit) => {
                    n.min(limit.saturating_sub(passed))
                }
            };
            passed += take;
            self.stats.bytes.fetch_add(take as u64, Ordering::Relaxed);
            if self.requests {
                self.stats
                    .request_bytes
                    .fetch_add(take as u64, Ordering::Relaxed);
            }
            if !self.write(&mut to, &buffer[..take]).await {
                return;
            }
            if let Fault::CutRequest(limit) = self.fault
                && passed >= limit
            {
                return; // dropping both halves resets the connection mid-request
            }
        }
    }

    async fn write(&mut self, to: &mut OwnedWriteHalf, mut bytes: &[u8]) -> bool {
        let Some(rng) = &mut self.drip else {
            return to.write_all(bytes).await.is_ok();
        };
        while !bytes.is_empty() {
            let (slice, rest) = bytes.split_at(rng.random_range(1..=16).min(bytes.len()));
            if to.write_all(slice).await.is_err() {
                return false;
            }
            self.stats.slices.fetch_add(1, Ordering::Relaxed);
            bytes = rest;
            tokio::time::sleep(Duration::from_millis(rng.random_range(1..=5))).await;
        }
        true
    }
}

/// Waits out a stall; false once the link is down or was cut since `born`.
async fn passable(link: &mut watch::Receiver<LinkState>, born: u64) -> bool {
    match link
        .wait_for(|s| s.link != Link::Stalled || s.cuts != born)
        .await
    {
        Ok(state) => state.link == Link::Up && state.cuts == born,
        Err(_) => false, // the proxy is gone
    }
}

/// Completes at the first cut after `born`.
async fn cut(link: &mut watch::Receiver<LinkState>, born: u64) {
    let _ = link.wait_for(|s| s.cuts != born).await;
}
