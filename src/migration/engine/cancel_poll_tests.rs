//! [`Cancellable::poll_first`]'s retries: a try that would block is tried again before the
//! wait, a cancel ends the polling, and a poll that goes unanswered sends the next wait to
//! `poll(2)` at once. The fd waited on is a socket with nothing to read, so a wait that
//! should not happen would block (until [`watched`] cancels it).

use super::tests::watched;
use super::*;
use std::cell::Cell;
use std::os::unix::net::UnixStream;
use std::time::Instant;

fn would_block<T>() -> io::Result<T> {
    Err(io::ErrorKind::WouldBlock.into())
}

/// `retry` of a read of `fd` (tried first, as on a non-blocking socket) with `polling`.
fn read_retry<T>(
    token: &CancelToken,
    fd: &impl AsRawFd,
    polling: Option<&(Duration, Waiter)>,
    op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    retry(token, fd.as_raw_fd(), libc::POLLIN, true, polling, op)
}

#[test]
fn a_try_answered_while_polling_never_waits() {
    let (quiet, _peer) = UnixStream::pair().unwrap();
    let token = CancelToken::new().unwrap();
    let polling = (Duration::from_secs(30), Waiter::default());
    let tries = Cell::new(0);
    let got = watched(&token, || {
        read_retry(&token, &quiet, Some(&polling), || {
            tries.set(tries.get() + 1);
            if tries.get() < 3 {
                would_block()
            } else {
                Ok(tries.get())
            }
        })
    });
    assert_eq!(got.unwrap(), 3, "answered by the third try, without a wait");
    assert!(polling.1.polls(), "an answered poll keeps polling");
    // Without polling the same retry waits in poll(2) for the quiet socket.
    let token = CancelToken::new().unwrap();
    let tries = Cell::new(0);
    let got = watched(&token, || {
        read_retry(&token, &quiet, None, || {
            tries.set(tries.get() + 1);
            token.cancel();
            would_block::<usize>()
        })
    });
    assert!(is_cancelled(&got.unwrap_err()));
    assert_eq!(tries.get(), 1, "one try, then the wait the cancel ends");
}

#[test]
fn a_cancel_ends_the_polling_before_another_try() {
    let (quiet, _peer) = UnixStream::pair().unwrap();
    let token = CancelToken::new().unwrap();
    let polling = (Duration::from_secs(30), Waiter::default());
    let (first, cancel) = std::sync::mpsc::channel();
    let after = Cell::new(0);
    let got = std::thread::scope(|s| {
        let t = &token;
        s.spawn(move || {
            if cancel.recv().is_ok() {
                t.cancel();
            }
        });
        watched(&token, || {
            read_retry(&token, &quiet, Some(&polling), || {
                if token.is_cancelled() {
                    after.set(after.get() + 1);
                }
                let _ = first.send(());
                would_block::<()>()
            })
        })
    });
    assert!(is_cancelled(&got.unwrap_err()));
    // The poll asks the token before every try; a cancel landing between that question
    // and the try lets one more try through.
    assert!(after.get() <= 1, "{} tries after the cancel", after.get());
}

#[test]
fn an_unanswered_poll_sends_the_next_wait_to_poll_at_once() {
    // A socket with a byte to read: each wait in poll(2) returns at once, and the retry
    // tries again until its op answers.
    let (ready, mut peer) = UnixStream::pair().unwrap();
    peer.write_all(b"x").unwrap();
    let token = CancelToken::new().unwrap();
    let limit = Duration::from_millis(1);
    let polling = (limit, Waiter::default());
    // The op answers only once the waiter has stopped polling (the poll went unanswered and
    // was counted), so the answer comes from the tries after the waits, however slowly this
    // thread runs. A waiter that never stops polling is given up on after a minute, and the
    // assertion below fails.
    let t0 = Instant::now();
    let got = watched(&token, || {
        read_retry(&token, &ready, Some(&polling), || {
            if polling.1.polls() && t0.elapsed() < Duration::from_secs(60) {
                would_block()
            } else {
                Ok(())
            }
        })
    });
    got.unwrap();
    assert!(
        !polling.1.polls(),
        "after an unanswered poll the next wait does not poll"
    );
}

/// `restore_from` polls its input only on one thread: overlapped, the reading thread's
/// polls would compete with the writing thread and the input's feeder for the CPUs.
#[test]
fn restore_polls_its_input_only_on_one_thread() {
    let f = tempfile::tempfile().unwrap();
    let token = CancelToken::new().unwrap();
    let limit = |o: &crate::migration::engine::Options| {
        super::super::restore::buffered(&f, &token, o)
            .get_ref()
            .poll_limit()
    };
    let one = crate::migration::engine::Options {
        overlap: false,
        ..Default::default()
    };
    assert_eq!(
        limit(&one),
        Some(crate::migration::engine::DEFAULT_MAX_POLL)
    );
    let never = crate::migration::engine::Options {
        max_poll: Duration::ZERO,
        ..one.clone()
    };
    assert_eq!(limit(&never), None);
    assert_eq!(limit(&Default::default()), None, "overlapped");
}
