//! The accept loop: HTTP/1.1 connections with a cap, a header timeout, and a way out for the
//! server when the cap is reached.
//!
//! Every open socket — an HTTP connection, or a WebSocket once upgraded — takes a slot of
//! [`Connections`]. The cap defaults to `max_connections`, lowered to what the process's
//! open-file limit leaves after a reserve for the database, outbound calls and logs, so the
//! server never runs out of file descriptors. When a new connection finds every slot taken, the
//! oldest *idle* HTTP connection — one with no request in flight: a keep-alive connection
//! between requests, or a client still trickling in its request headers — is closed to make
//! room. A connection with a request in flight is never closed for this; if every connection is
//! busy, the new one is closed at once. Clients that open connections and send nothing
//! (slowloris) therefore cannot keep `/healthz` or anyone else out, and each of them is also
//! closed by the header timeout.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use hyper::body::Body as _;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot, watch};
use tower::ServiceExt;

/// Open sockets of the server, against a cap (see the module doc).
#[derive(Clone)]
pub struct Connections(Arc<Inner>);

struct Inner {
    cap: usize,
    table: Mutex<Table>,
    /// Signalled when a connection's socket is closed.
    released: Notify,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    /// HTTP connections by id, oldest first; one asked to close stays until its socket is
    /// closed, so that it still counts against the cap.
    http: BTreeMap<u64, Conn>,
    /// Upgraded sockets (WebSockets).
    sockets: usize,
}

impl Table {
    fn open(&self) -> usize {
        self.http.len() + self.sockets
    }

    fn closing(&self) -> bool {
        self.http.values().any(|c| c.close.is_none())
    }

    /// Asks the oldest idle connection to close; `false` if every connection is busy.
    fn evict_one(&mut self) -> bool {
        let idle = self
            .http
            .values_mut()
            .find(|c| c.close.is_some() && c.busy.load(Ordering::Acquire) == 0);
        match idle.and_then(|c| c.close.take()) {
            Some(close) => {
                let _ = close.send(());
                metrics::counter!("herald_connections_evicted_total").increment(1);
                true
            }
            None => false,
        }
    }
}

struct Conn {
    /// Requests in flight (until their response body is sent).
    busy: Arc<AtomicUsize>,
    /// `None` once the connection was asked to close.
    close: Option<oneshot::Sender<()>>,
}

/// An HTTP connection's place in [`Connections`].
struct Admitted {
    id: u64,
    busy: Arc<AtomicUsize>,
    closed: oneshot::Receiver<()>,
}

/// A WebSocket's slot; freed when dropped.
pub struct SocketSlot(Connections);

impl Drop for SocketSlot {
    fn drop(&mut self) {
        {
            let mut t = self.0.table();
            t.sockets = t.sockets.saturating_sub(1);
        }
        self.0.0.released.notify_one();
    }
}

/// File descriptors kept back from connections: the database and its readers, outbound HTTP
/// calls, deliveries, logs.
const FD_RESERVE: usize = 64;

impl Connections {
    /// At most `max` open sockets, and fewer if the open-file limit requires it.
    pub fn new(max: usize) -> Self {
        let cap = match open_file_limit() {
            Some(limit) => max.min(limit.saturating_sub(FD_RESERVE.max(limit / 8))),
            None => max,
        }
        .max(1);
        Self(Arc::new(Inner {
            cap,
            table: Mutex::new(Table::default()),
            released: Notify::new(),
        }))
    }

    /// The effective cap.
    pub fn cap(&self) -> usize {
        self.0.cap
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.0.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until another connection fits under the cap, closing the oldest idle one if
    /// needed; `false` at once if every slot is taken by a busy connection. Called before
    /// `accept`, so that a connection waiting for room holds no file descriptor yet.
    async fn room(&self) -> bool {
        loop {
            let released = self.0.released.notified();
            {
                let mut t = self.table();
                if t.open() < self.0.cap {
                    return true;
                }
                if !t.closing() && !t.evict_one() {
                    return false;
                }
            }
            // A connection asked to close closes within moments; the timeout only guards
            // against a missed wake-up.
            let _ = tokio::time::timeout(Duration::from_millis(100), released).await;
        }
    }

    fn admit(&self) -> Admitted {
        let mut t = self.table();
        t.next_id += 1;
        let id = t.next_id;
        let busy = Arc::new(AtomicUsize::new(0));
        let (close, closed) = oneshot::channel();
        t.http.insert(
            id,
            Conn {
                busy: busy.clone(),
                close: Some(close),
            },
        );
        Admitted { id, busy, closed }
    }

    fn release(&self, id: u64) {
        self.table().http.remove(&id);
        self.0.released.notify_one();
    }

    /// A slot for a WebSocket about to be upgraded; `None` when every connection is busy. When
    /// the cap is reached, the oldest idle connection is asked to close and the socket goes
    /// over the cap for the moment that takes (the file-descriptor reserve covers it).
    pub fn socket_slot(&self) -> Option<SocketSlot> {
        let mut t = self.table();
        if t.open() >= self.0.cap && !t.evict_one() {
            return None;
        }
        t.sockets += 1;
        Some(SocketSlot(self.clone()))
    }
}

/// The soft limit on open files of this process, where the system tells it.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Decrements a connection's in-flight count when dropped (with the response body).
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight requests finish
/// (idle connections close at once) and returns when every connection is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    conns: Connections,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a clone; `closed()` resolves once all of them are gone.
    let (alive_tx, alive_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    let mut refused_logged = tokio::time::Instant::now();
    loop {
        let room = tokio::select! {
            room = conns.room() => room,
            _ = &mut shutdown => break,
        };
        let (tcp, _addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: wait a
                    // moment rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        if !room {
            if refused_logged.elapsed() >= Duration::from_secs(1) {
                tracing::warn!(
                    cap = conns.cap(),
                    "every connection is busy; refusing new ones"
                );
                refused_logged = tokio::time::Instant::now();
            }
            metrics::counter!("herald_connections_refused_total").increment(1);
            drop(tcp);
            continue;
        }
        let admitted = conns.admit();
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
        tokio::spawn(connection(
            tcp,
            app.clone(),
            conns.clone(),
            admitted,
            header_timeout,
            stop_rx.clone(),
            alive_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_rx);
    alive_tx.closed().await;
    Ok(())
}

/// One HTTP connection, until it ends, is closed to make room, or the server stops.
async fn connection(
    tcp: tokio::net::TcpStream,
    app: Router,
    conns: Connections,
    admitted: Admitted,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
    _alive: watch::Receiver<()>,
) {
    let Admitted { id, busy, closed } = admitted;
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let guard = Busy::start(&busy);
        let response = app.clone().oneshot(req.map(Body::new));
        async move {
            let response = match response.await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            // The request counts as in flight until its response body is sent. A body whose
            // size is known is in memory already and goes out with the response head.
            let response = if response.body().size_hint().exact().is_some() {
                drop(guard);
                response
            } else {
                response.map(|body| {
                    Body::new(body.map_frame(move |f| {
                        let _ = &guard;
                        f
                    }))
                })
            };
            Ok::<_, Infallible>(response)
        }
    });
    let mut conn = Box::pin(
        http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades(),
    );
    let mut closed = std::pin::pin!(closed);
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let mut stopping = std::pin::pin!(stopping);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            _ = &mut closed => break,
            _ = &mut stopping, if !draining => {
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
    // The socket is closed before its slot is given back, so the open-file count never
    // passes the cap.
    drop(conn);
    conns.release(id);
}
