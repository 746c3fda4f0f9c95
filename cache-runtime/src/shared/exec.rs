//! Where the shared tier's I/O runs: layercache's own I/O runtime (one
//! thread), the caller's runtime when it may drive a connection, the
//! blocking pool for blocking stores, and the `block_on` of sync callers
//! (inside which a store may do its I/O on the caller's own thread: see
//! [`in_block_on`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::error::{ErrorKind, SharedError};

/// The runtime the shared tier's I/O runs on: one worker thread, created on
/// first use and kept for the life of the process.
pub(crate) fn io_runtime() -> &'static tokio::runtime::Handle {
    static RT: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    RT.get_or_init(|| {
        // A current-thread runtime driven by one dedicated thread: the
        // connection's tasks, its socket and every timeout live there, with
        // none of a work-stealing pool's wake-up machinery.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("layercache: cannot start the I/O runtime");
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("layercache-io".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .expect("layercache: cannot start the I/O thread");
        handle
    })
}

/// Polls `F` inside the I/O runtime's context, so that the store's timers
/// and any task it spawns belong to that runtime whatever executor polls it.
pub(crate) struct InRuntime<'h, F> {
    pub(crate) handle: &'h tokio::runtime::Handle,
    pub(crate) fut: Pin<Box<F>>,
}

impl<F: Future> Future for InRuntime<'_, F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let _guard = this.handle.enter();
        this.fut.as_mut().poll(cx)
    }
}

/// Runs `fut` to completion on this thread, parking between wake-ups.
///
/// Used by sync cached functions: the store's futures are driven by the
/// I/O runtime's thread, so parking here cannot deadlock even inside a
/// tokio runtime (it blocks that worker for at most the tier's timeout,
/// as any blocking I/O in a sync function would).
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    // While this thread blocks, no connection driven by its own runtime may
    // be used: that runtime's worker is the one being blocked.
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            BLOCKING.with(|b| b.set(self.0));
        }
    }
    let _reset = Reset(BLOCKING.with(|b| b.replace(true)));
    // Unconstrained: inside a tokio task, an exhausted cooperative budget
    // would make every poll return Pending and park this thread forever
    // (the wake-up goes to the task this thread is blocking).
    let mut fut = std::pin::pin!(tokio::task::unconstrained(fut));
    // A future ready at its first poll (a sync miss without a shared tier)
    // needs no waker: pollster would allocate one per call.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
        return v;
    }
    pollster::block_on(fut)
}

thread_local! {
    /// Set while [`block_on`] runs on this thread.
    static BLOCKING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is a sync caller inside [`block_on`]: a store may
/// then do its I/O on this thread, blocking, instead of through the I/O
/// thread (the caller waits either way; this saves the two hand-offs).
pub(crate) fn in_block_on() -> bool {
    BLOCKING.with(|b| b.get())
}

/// The caller's own tokio runtime, when a store may drive a connection on
/// it instead of on the I/O thread: an async caller (not inside
/// [`block_on`]) on a multi-thread runtime other than the I/O one. Requests
/// then go to a connection task on the caller's workers, saving two thread
/// hand-offs per operation; a current-thread runtime is left out because
/// a sync call blocking it would starve its own connection.
pub(crate) fn caller_runtime() -> Option<tokio::runtime::Id> {
    if BLOCKING.with(|b| b.get()) {
        return None;
    }
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let id = handle.id();
    // The answer for the runtime this thread saw last, without a lock.
    if let Some((last, usable)) = LAST_RUNTIME.with(|l| l.get()) {
        if last == id {
            return usable.then_some(id);
        }
    }
    if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread
        || id == io_runtime().id()
    {
        LAST_RUNTIME.with(|l| l.set(Some((id, false))));
        return None;
    }
    // Whether each runtime has the drivers is asked once; a few recent
    // runtimes are remembered (a test suite makes one per test).
    type Seen = std::sync::Mutex<Vec<(tokio::runtime::Id, bool)>>;
    static SEEN: Seen = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let usable = match seen.iter().find(|(i, _)| *i == id) {
        Some((_, usable)) => *usable,
        None => {
            let usable = runtime_has_io_and_time();
            if seen.len() >= 16 {
                seen.remove(0);
            }
            seen.push((id, usable));
            usable
        }
    };
    LAST_RUNTIME.with(|l| l.set(Some((id, usable))));
    usable.then_some(id)
}

thread_local! {
    /// The runtime this thread last asked `caller_runtime` about, and the answer.
    static LAST_RUNTIME: std::cell::Cell<Option<(tokio::runtime::Id, bool)>> =
        const { std::cell::Cell::new(None) };
    /// While a store operation is being built: the caller's runtime, if the
    /// store may use a connection on it.
    pub(crate) static OP_RUNTIME: std::cell::Cell<Option<tokio::runtime::Id>> =
        const { std::cell::Cell::new(None) };
    /// While a store operation is being built by `Tier::call`: its time
    /// budget, until the store takes it over (see [`take_budget`]).
    pub(crate) static OP_BUDGET: std::cell::Cell<Option<Duration>> =
        const { std::cell::Cell::new(None) };
    /// Counts this thread's shared operations, to sample their latency.
    static OP_TICK: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// For a store building an operation: the caller's runtime whose own
/// connection it may use (decided once per operation by `Tier::call`).
pub fn operation_runtime() -> Option<tokio::runtime::Id> {
    OP_RUNTIME.with(|o| o.get())
}

/// For a store building an operation: takes over its time budget, so
/// that the store, not `Tier::call`, bounds it: the operation must then
/// answer (an error when the time is up) within the budget from now. A
/// store that serves many callers with one command can so set one timer
/// for all of them instead of one per caller. `None` outside `Tier::call`,
/// or when taken already: the caller's own timer bounds the operation.
#[cfg(feature = "redis")]
pub(crate) fn take_budget() -> Option<Duration> {
    OP_BUDGET.with(|b| b.take())
}

/// One shared operation in [`SHARED_SAMPLE_EVERY`] (per thread) has its
/// latency recorded: the histogram's atomics are shared by every thread.
pub const SHARED_SAMPLE_EVERY: u32 = 8;

pub(crate) fn sample_this_op() -> bool {
    OP_TICK.with(|t| {
        let n = t.get().wrapping_add(1);
        t.set(n);
        n % SHARED_SAMPLE_EVERY == 1
    })
}

/// Whether the current runtime has the I/O and time drivers a connection
/// needs. Tokio only says so by panicking, so ask once per runtime with the
/// panic caught and its message kept quiet.
fn runtime_has_io_and_time() -> bool {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let probe = std::panic::catch_unwind(|| {
        drop(tokio::time::sleep(Duration::ZERO));
        #[cfg(any(feature = "redis", feature = "memcached"))]
        {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
            socket.set_nonblocking(true)?;
            tokio::net::UdpSocket::from_std(socket).map(drop)
        }
        #[cfg(not(any(feature = "redis", feature = "memcached")))]
        Ok::<(), std::io::Error>(())
    });
    std::panic::set_hook(hook);
    matches!(probe, Ok(Ok(())))
}

/// Runs the blocking store I/O `f` on the blocking pool of the runtime
/// polling this future (the caller's, or layercache's I/O runtime), never
/// on an async worker. A panic in `f` is a server error, not a panic of
/// the caller.
pub(crate) async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SharedError> + Send + 'static,
) -> Result<T, SharedError> {
    let handle = tokio::runtime::Handle::try_current().unwrap_or_else(|_| io_runtime().clone());
    handle.spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(SharedError::new(
            ErrorKind::Server,
            format!("a blocking store operation failed: {e}"),
        ))
    })
}
