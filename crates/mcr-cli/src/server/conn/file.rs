//! Sending a region of a file to a socket with `sendfile(2)`.
//!
//! The kernel moves the bytes from the page cache to the socket; they are
//! never copied into this process. `sendfile` on a non-blocking socket
//! never waits for the network, but it does wait for the disk when the
//! file's pages are not cached — on an async worker that would stall
//! every other connection it serves. So each chunk is first checked with
//! `cachestat(2)` (Linux 6.5): a chunk that is not wholly in the page
//! cache is read on the blocking pool and written from memory instead
//! (which also leaves it cached for the next reader). Kernels without
//! `cachestat` send every chunk with `sendfile` straight away, as nginx
//! does without its thread pool: a cold chunk then holds a worker for
//! one chunk's read.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mcr_http::FileBody;
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::limits;

/// Most bytes one `sendfile` call (and one cache check) covers: nginx's
/// `sendfile_max_chunk`. Bounds how long one call keeps a worker, and how
/// much a cold chunk reads into memory.
const CHUNK: u64 = 2 << 20;

/// Sends `head` (the response's head) and then `body`'s region of its
/// file to `stream`. The head is sent with `MSG_MORE`, so the kernel puts
/// it in one segment with the first bytes of the file. Fails with
/// `UnexpectedEof` if the file is shorter than the region (it cannot be:
/// blobs are never rewritten) and with the socket's error if the peer
/// goes away or takes nothing for `stall`.
pub(super) async fn send(
    stream: &mut TcpStream,
    head: &[u8],
    body: &FileBody,
    stall: Duration,
) -> io::Result<()> {
    let more = if body.len > 0 { libc::MSG_MORE } else { 0 };
    let mut rest = head;
    while !rest.is_empty() {
        let n = send_head(stream, rest, more, stall).await?;
        rest = &rest[n..];
    }
    let (mut offset, end) = (body.offset, body.offset + body.len);
    while offset < end {
        let chunk = (end - offset).min(CHUNK);
        if is_cached(&body.file, offset, chunk) == Some(false) {
            let bytes = read_on_pool(Arc::clone(&body.file), offset, chunk).await?;
            limits::write_all(stream, &bytes, stall).await?;
            offset += chunk;
            continue;
        }
        let sent = send_some(stream, &body.file, offset, chunk, stall).await?;
        if sent == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        offset += sent;
    }
    Ok(())
}

/// One `send(2)` of `bytes` with `flags`, once the socket takes bytes;
/// returns how many it took.
async fn send_head(
    stream: &TcpStream,
    bytes: &[u8],
    flags: libc::c_int,
    stall: Duration,
) -> io::Result<usize> {
    loop {
        limits::writable(stream, stall).await?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            // SAFETY: the descriptor is open (borrowed) and `bytes` is a
            // live buffer of the given length.
            let n = unsafe {
                libc::send(
                    stream.as_raw_fd(),
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    flags | libc::MSG_NOSIGNAL,
                )
            };
            usize::try_from(n).map_err(|_| io::Error::last_os_error())
        });
        match sent {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => return Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

/// One `sendfile` of up to `len` bytes at `offset`, once the socket takes
/// bytes; returns how many it sent (0 at the file's end).
async fn send_some(
    stream: &TcpStream,
    file: &File,
    offset: u64,
    len: u64,
    stall: Duration,
) -> io::Result<u64> {
    let count = usize::try_from(len).map_err(io::Error::other)?;
    loop {
        limits::writable(stream, stall).await?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            let mut at = libc::off_t::try_from(offset).map_err(io::Error::other)?;
            // SAFETY: both descriptors stay open for the call (`stream`
            // and `file` are borrowed), and `at` is a valid off_t the
            // kernel reads and advances.
            let n = unsafe { libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), &mut at, count) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as u64)
            }
        });
        match sent {
            Ok(n) => return Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads `len` bytes at `offset` on the blocking pool.
async fn read_on_pool(file: Arc<File>, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0; usize::try_from(len).map_err(io::Error::other)?];
        file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    })
    .await
    .map_err(io::Error::other)?
}

/// `cachestat(2)`'s system call number: new system calls share one number
/// on every architecture, and the libc crate does not name this one yet.
const SYS_CACHESTAT: libc::c_long = 451;

/// Set once the kernel answered that it has no `cachestat`.
static NO_CACHESTAT: AtomicBool = AtomicBool::new(false);

/// `struct cachestat_range` of `<linux/mman.h>`.
#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

/// `struct cachestat` of `<linux/mman.h>`.
#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// Whether every page of `len` bytes at `offset` of `file` is in the page
/// cache; `None` when the kernel cannot say.
fn is_cached(file: &File, offset: u64, len: u64) -> Option<bool> {
    if NO_CACHESTAT.load(Ordering::Relaxed) {
        return None;
    }
    let range = CachestatRange { off: offset, len };
    let mut stat = Cachestat::default();
    // SAFETY: the descriptor is open (borrowed), and both structs have the
    // layout the kernel expects and live across the call.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const CachestatRange,
            &mut stat as *mut Cachestat,
            0,
        )
    };
    if rc != 0 {
        if io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
            NO_CACHESTAT.store(true, Ordering::Relaxed);
        }
        return None;
    }
    let page = page_size();
    let pages = (offset + len).div_ceil(page) - offset / page;
    Some(stat.nr_cache >= pages)
}

fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf only reads a configuration value.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// Long enough that no test write stalls out.
    const STALL: Duration = Duration::from_secs(60);

    /// Every byte of the region arrives, in order, whichever way each
    /// chunk went (sendfile or the blocking pool).
    #[tokio::test]
    async fn sends_exactly_the_region() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let data: Vec<u8> = (0..(5 * CHUNK as usize + 123))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let body = FileBody {
            file: Arc::new(File::open(&path).unwrap()),
            offset: 1001,
            len: data.len() as u64 - 2000,
        };
        send(&mut stream, b"head:", &body, STALL).await.unwrap();
        drop(stream);
        let got = reader.await.unwrap();
        assert_eq!(&got[..5], b"head:");
        assert!(got[5..] == data[1001..data.len() - 999]);
    }

    #[tokio::test]
    async fn a_region_past_the_end_of_the_file_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short");
        std::fs::write(&path, b"0123456789").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let body = FileBody {
            file: Arc::new(File::open(&path).unwrap()),
            offset: 4,
            len: 10,
        };
        let e = send(&mut stream, b"", &body, STALL).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn the_cache_check_answers_for_a_file_just_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warm");
        std::fs::write(&path, vec![7u8; 64 << 10]).unwrap();
        let file = File::open(&path).unwrap();
        // Just written, so cached, on kernels that can say.
        assert_ne!(is_cached(&file, 0, 64 << 10), Some(false));
    }
}
