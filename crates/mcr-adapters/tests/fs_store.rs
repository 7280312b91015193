//! `FsBlobStore` behaviour beyond the port contract: the on-disk layout,
//! path safety, the same-filesystem check, restarts, tidy deletes,
//! concurrency, and how failed or abandoned appends leave a session.

use futures_util::TryStreamExt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use mcr_adapters::fs::FsBlobStore;
use mcr_core::digest::{Algorithm, Digest};
use mcr_core::error::Error;
use mcr_core::ids::UploadId;
use mcr_core::ports::{BlobStore, ByteRange, ByteStream, UploadState};
use tempfile::TempDir;

struct Fixture {
    dir: TempDir,
    store: FsBlobStore,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store =
            FsBlobStore::open(dir.path().join("layers"), dir.path().join("uploads")).unwrap();
        Fixture { dir, store }
    }

    fn layers(&self) -> PathBuf {
        self.dir.path().join("layers")
    }

    fn uploads(&self) -> PathBuf {
        self.dir.path().join("uploads")
    }

    fn reopen(&self) -> FsBlobStore {
        FsBlobStore::open(self.layers(), self.uploads()).unwrap()
    }
}

fn body(chunks: &[&[u8]]) -> ByteStream {
    let chunks: Vec<io::Result<Bytes>> = chunks
        .iter()
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(stream::iter(chunks))
}

fn failing_body(good: Vec<u8>) -> ByteStream {
    let items = vec![
        Ok(Bytes::from(good)),
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ];
    Box::pin(stream::iter(items))
}

async fn read_all(store: &FsBlobStore, digest: &Digest, range: Option<ByteRange>) -> Vec<u8> {
    let mut body = store.read(digest, range).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = body.stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(out.len() as u64, body.len);
    out
}

/// An upload driven the way the engine drives one: every request resumes a
/// writer from the state recorded after the request before.
struct Upload {
    id: UploadId,
    state: UploadState,
}

impl Upload {
    async fn begin(store: &FsBlobStore) -> Upload {
        Upload::begin_as(store, UploadId::generate().unwrap()).await
    }

    async fn begin_as(store: &FsBlobStore, id: UploadId) -> Upload {
        store.begin_upload(&id).await.unwrap();
        Upload {
            id,
            state: UploadState::default(),
        }
    }

    /// One request's chunk; the new state is recorded only if it worked.
    async fn append(&mut self, store: &FsBlobStore, body: ByteStream) -> Result<u64, Error> {
        let mut w = store.resume_upload(&self.id, &self.state).await?;
        w.append(body).await?;
        self.state = w.state().clone();
        Ok(self.state.size)
    }

    async fn finish(&self, store: &FsBlobStore, digest: &Digest) -> Result<u64, Error> {
        store
            .resume_upload(&self.id, &self.state)
            .await?
            .finish(digest)
            .await
    }
}

async fn put(store: &FsBlobStore, data: &[u8], algorithm: Algorithm) -> Digest {
    let digest = Digest::of(algorithm, data);
    let mut upload = Upload::begin(store).await;
    upload.append(store, body(&[data])).await.unwrap();
    assert_eq!(
        upload.finish(store, &digest).await.unwrap(),
        data.len() as u64
    );
    digest
}

/// Every regular file under `root`, relative to it, sorted.
fn files_under(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_land_at_the_documented_paths() {
    let f = Fixture::new();
    // At most 0750 and 0700: a stricter umask may take more away.
    assert_eq!(mode(&f.layers()) & !0o750, 0);
    assert_eq!(mode(&f.uploads()) & !0o700, 0);

    let d256 = put(&f.store, b"hello", Algorithm::Sha256).await;
    assert_eq!(
        d256.to_string(),
        "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    let d512 = put(&f.store, b"hello", Algorithm::Sha512).await;

    assert_eq!(
        files_under(f.dir.path()),
        vec![
            PathBuf::from(
                "layers/sha256/2c/2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
            ),
            PathBuf::from(format!("layers/sha512/{}/{}", &d512.hex()[..2], d512.hex())),
        ],
        "blobs under layers/<algorithm>/<2 hex>/<hex>, nothing left in uploads"
    );
    let blob = f.layers().join("sha256/2c").join(d256.hex());
    assert_eq!(std::fs::read(&blob).unwrap(), b"hello");
    assert_eq!(mode(&f.layers().join("sha256")) & !0o750, 0);
    assert_eq!(mode(&f.layers().join("sha256/2c")) & !0o750, 0);

    let mut expected = vec![d256.clone(), d512.clone()];
    expected.sort();
    assert_eq!(
        f.store.list().try_collect::<Vec<_>>().await.unwrap(),
        expected
    );
    assert_eq!(f.store.stat(&d256).await.unwrap(), Some(5));
    assert_eq!(read_all(&f.store, &d512, None).await, b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_sessions_are_files_named_by_their_id() {
    let f = Fixture::new();
    let id = UploadId::parse("0123456789abcdef0123456789abcdef").unwrap();
    let mut upload = Upload::begin_as(&f.store, id.clone()).await;
    upload.append(&f.store, body(&[b"abc"])).await.unwrap();
    assert_eq!(
        files_under(f.dir.path()),
        vec![PathBuf::from("uploads/0123456789abcdef0123456789abcdef")]
    );
    assert_eq!(
        f.store
            .list_uploads()
            .try_collect::<Vec<_>>()
            .await
            .unwrap(),
        vec![id.clone()]
    );
    assert!(matches!(
        f.store.begin_upload(&id).await,
        Err(Error::Conflict(_))
    ));
    f.store.cancel_upload(&id).await.unwrap();
    assert!(files_under(f.dir.path()).is_empty());
    f.store.cancel_upload(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_escapes_the_two_roots_and_listings_trust_no_stray_name() {
    // Names that could climb out of a directory never become ids or
    // digests, so they can never reach a path join.
    for bad in [
        "../../etc/passwd",
        "..",
        "0123456789abcdef0123456789abcde/",
        "",
    ] {
        assert!(UploadId::parse(bad).is_err(), "{bad:?}");
    }
    let hex64 = "a".repeat(64);
    for bad in [
        format!("sha256:../{}", &hex64[3..]),
        format!("sha256:{}/..", &hex64[4..]),
        format!("sha256/../../x:{hex64}"),
    ] {
        assert!(Digest::parse(&bad).is_err(), "{bad:?}");
    }

    let f = Fixture::new();
    let good = put(&f.store, b"content", Algorithm::Sha256).await;
    let real_upload = UploadId::generate().unwrap();
    f.store.begin_upload(&real_upload).await.unwrap();

    // Things an operator or a crashed tool might leave behind.
    let misplaced = Digest::sha256_of(b"misplaced");
    let wrong_prefix = if &misplaced.hex()[..2] == "00" {
        "01"
    } else {
        "00"
    };
    let strays = [
        format!("layers/sha256/{wrong_prefix}/{}", misplaced.hex()),
        "layers/sha256/zz/not-a-digest".to_string(),
        format!("layers/sha256/{}/{}.tmp", &good.hex()[..2], good.hex()),
        format!("layers/md5/d4/{}", "d".repeat(32)),
        "layers/sha256/stray-file".to_string(),
        "uploads/NOT-AN-ID".to_string(),
        "uploads/0123456789ABCDEF0123456789ABCDEF".to_string(),
    ];
    for stray in &strays {
        let path = f.dir.path().join(stray);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"junk").unwrap();
    }
    // A directory named like an upload is not an upload.
    let dir_id = UploadId::generate().unwrap();
    std::fs::create_dir(f.uploads().join(dir_id.as_str())).unwrap();

    assert_eq!(
        f.store.list().try_collect::<Vec<_>>().await.unwrap(),
        vec![good.clone()]
    );
    assert_eq!(
        f.store
            .list_uploads()
            .try_collect::<Vec<_>>()
            .await
            .unwrap(),
        vec![real_upload]
    );
    assert_eq!(f.store.stat(&misplaced).await.unwrap(), None);
    assert!(matches!(
        f.store.read(&misplaced, None).await,
        Err(Error::BlobUnknown(d)) if d == misplaced
    ));
    assert!(matches!(
        f.store
            .resume_upload(&dir_id, &UploadState::default())
            .await,
        Err(Error::UploadUnknown(_))
    ));

    // Every file the store itself made is inside its two roots.
    let outside: Vec<_> = files_under(f.dir.path())
        .into_iter()
        .filter(|p| !p.starts_with("layers") && !p.starts_with("uploads"))
        .collect();
    assert!(outside.is_empty(), "{outside:?}");
}

#[test]
fn directories_on_one_filesystem_are_accepted() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(a.path().join("layers"), b.path().join("up/loads")).unwrap();
    assert_eq!(store.layers_path(), a.path().join("layers"));
    assert_eq!(store.uploads_path(), b.path().join("up/loads"));
    assert!(b.path().join("up/loads").is_dir());
}

#[test]
fn directories_on_two_filesystems_are_refused_naming_both() {
    use std::os::unix::fs::MetadataExt;
    let shm = Path::new("/dev/shm");
    let Ok(shm_meta) = std::fs::metadata(shm) else {
        eprintln!("skipped: no /dev/shm, so no second filesystem to test against");
        return;
    };
    let local = tempfile::tempdir().unwrap();
    if std::fs::metadata(local.path()).unwrap().dev() == shm_meta.dev() {
        eprintln!("skipped: /dev/shm and the temporary directory share a filesystem");
        return;
    }
    let other = tempfile::tempdir_in(shm).unwrap();
    let layers = local.path().join("layers");
    let uploads = other.path().join("uploads");
    let err = match FsBlobStore::open(&layers, &uploads) {
        Ok(_) => panic!("directories on two filesystems were accepted"),
        Err(e) => e,
    };
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&layers.display().to_string()), "{message}");
    assert!(
        message.contains(&uploads.display().to_string()),
        "{message}"
    );
    assert!(message.contains("different filesystems"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_survives_a_restart() {
    let f = Fixture::new();
    let first = vec![7u8; 3 << 20];
    let second = b"and the rest".to_vec();
    let whole = [first.as_slice(), second.as_slice()].concat();

    for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
        let mut upload = {
            let store = f.reopen();
            let mut upload = Upload::begin(&store).await;
            upload.append(&store, body(&[&first])).await.unwrap();
            upload
        }; // the process "restarts": the hashing state in memory is gone

        let store = f.reopen();
        assert_eq!(
            store.list_uploads().try_collect::<Vec<_>>().await.unwrap(),
            vec![upload.id.clone()]
        );
        let size = upload.append(&store, body(&[&second])).await.unwrap();
        assert_eq!(size, whole.len() as u64);
        let digest = Digest::of(algorithm, &whole);
        assert_eq!(upload.finish(&store, &digest).await.unwrap(), size);
        assert_eq!(read_all(&store, &digest, None).await, whole);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_continued_elsewhere_is_hashed_again_on_finish() {
    let f = Fixture::new();
    let (here, elsewhere) = (f.reopen(), f.reopen());
    let mut upload = Upload::begin(&here).await;
    // `here` now remembers a hash over 3 bytes...
    upload.append(&here, body(&[b"abc"])).await.unwrap();
    // ...which another process makes stale by appending.
    upload.append(&elsewhere, body(&[b"def"])).await.unwrap();
    let digest = Digest::sha256_of(b"abcdef");
    assert_eq!(upload.finish(&here, &digest).await.unwrap(), 6);
    assert_eq!(read_all(&elsewhere, &digest, None).await, b"abcdef");
}

/// The hash this process remembers must never stand for other bytes of
/// the same length: here an append here whose state was never recorded
/// is cut off by another process, which appends different bytes of the
/// same length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_hash_never_stands_for_bytes_written_elsewhere() {
    let f = Fixture::new();
    let (here, elsewhere) = (f.reopen(), f.reopen());
    let mut upload = Upload::begin(&here).await;
    upload.append(&here, body(&[b"abc"])).await.unwrap();
    let recorded = upload.state.clone();
    // An append here whose new state the engine never recorded.
    let mut lost = here.resume_upload(&upload.id, &recorded).await.unwrap();
    lost.append(body(&[b"XYZ"])).await.unwrap();
    drop(lost);
    // Another process resumes from the recorded state: the unrecorded
    // bytes are cut off before it appends its own.
    upload.append(&elsewhere, body(&[b"def"])).await.unwrap();
    assert_eq!(
        std::fs::read(f.uploads().join(upload.id.as_str())).unwrap(),
        b"abcdef"
    );
    let wrong = Digest::sha256_of(b"abcXYZ");
    assert!(matches!(
        upload.finish(&here, &wrong).await,
        Err(Error::DigestMismatch { actual, .. }) if actual == Digest::sha256_of(b"abcdef")
    ));
    let right = Digest::sha256_of(b"abcdef");
    assert_eq!(upload.finish(&here, &right).await.unwrap(), 6);
}

/// Two contents whose sha256 digests share their first two hex characters.
fn two_contents_sharing_a_prefix() -> (Vec<u8>, Vec<u8>) {
    let mut seen = std::collections::HashMap::new();
    (0u32..)
        .find_map(|i| {
            let data = format!("blob {i}").into_bytes();
            let prefix = Digest::sha256_of(&data).hex()[..2].to_string();
            seen.insert(prefix, data.clone()).map(|other| (other, data))
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_last_blob_of_a_prefix_removes_its_directory() {
    let f = Fixture::new();
    let (a, b) = two_contents_sharing_a_prefix();
    let da = put(&f.store, &a, Algorithm::Sha256).await;
    let db = put(&f.store, &b, Algorithm::Sha256).await;
    let prefix = f.layers().join("sha256").join(&da.hex()[..2]);

    assert!(f.store.delete(&da).await.unwrap());
    assert!(prefix.is_dir(), "still holds the other blob");
    assert_eq!(
        f.store.list().try_collect::<Vec<_>>().await.unwrap(),
        vec![db.clone()]
    );

    assert!(f.store.delete(&db).await.unwrap());
    assert!(!prefix.exists(), "the empty prefix directory is removed");
    assert!(f.layers().join("sha256").is_dir());
    assert!(!f.store.delete(&db).await.unwrap());
    assert_eq!(f.store.stat(&db).await.unwrap(), None);
    assert!(f
        .store
        .list()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .is_empty());

    // And the prefix comes back when a blob needs it again.
    put(&f.store, &a, Algorithm::Sha256).await;
    assert_eq!(read_all(&f.store, &da, None).await, a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finishing_into_a_prefix_that_another_delete_empties_still_works() {
    let f = Fixture::new();
    let (a, b) = two_contents_sharing_a_prefix();
    // Each task keeps creating and deleting a blob in the same prefix
    // directory, so one task's delete keeps removing the directory the
    // other is about to rename into.
    let tasks: Vec<_> = [a, b]
        .into_iter()
        .map(|data| {
            let store = f.store.clone();
            tokio::spawn(async move {
                for _ in 0..200 {
                    let digest = put(&store, &data, Algorithm::Sha256).await;
                    assert!(store.delete(&digest).await.unwrap());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert!(f
        .store
        .list()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .is_empty());
    assert!(f
        .store
        .list_uploads()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uploads_of_the_same_content_make_one_blob() {
    let f = Fixture::new();
    let store = Arc::new(f.store.clone());
    let data: Arc<Vec<u8>> = Arc::new((0..300_000u32).map(|i| (i % 251) as u8).collect());
    let digest = Digest::sha256_of(&data);
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (store, data, digest) = (Arc::clone(&store), Arc::clone(&data), digest.clone());
            tokio::spawn(async move {
                let mut upload = Upload::begin(&store).await;
                let (head, tail) = data.split_at(data.len() / 2);
                upload.append(&store, body(&[head])).await?;
                upload.append(&store, body(&[tail])).await?;
                upload.finish(&store, &digest).await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), data.len() as u64);
    }
    assert_eq!(
        files_under(f.dir.path()),
        vec![PathBuf::from(format!(
            "layers/sha256/{}/{}",
            &digest.hex()[..2],
            digest.hex()
        ))]
    );
    assert!(store
        .list_uploads()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .is_empty());
    assert_eq!(read_all(&store, &digest, None).await, *data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_append_leaves_the_upload_as_it_was() {
    let f = Fixture::new();
    let mut upload = Upload::begin(&f.store).await;
    upload.append(&f.store, body(&[b"kept "])).await.unwrap();
    let path = f.uploads().join(upload.id.as_str());

    // More than one write batch lands on disk before the body breaks.
    let mut w = f
        .store
        .resume_upload(&upload.id, &upload.state)
        .await
        .unwrap();
    let err = w
        .append(failing_body(vec![1u8; 5 << 20]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UploadInvalid(_)), "{err:?}");
    assert_eq!(w.state(), &upload.state, "the writer's state moved");
    drop(w);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        5,
        "the file was not cut back"
    );

    upload
        .append(&f.store, body(&[b"and ", b"more"]))
        .await
        .unwrap();
    let wrong = Digest::sha256_of(b"something else");
    let right = Digest::sha256_of(b"kept and more");
    assert!(matches!(
        upload.finish(&f.store, &wrong).await,
        Err(Error::DigestMismatch { expected, actual }) if expected == wrong && actual == right
    ));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 13);
    assert_eq!(upload.finish(&f.store, &right).await.unwrap(), 13);
    assert!(!path.exists());
    assert!(matches!(
        upload.finish(&f.store, &right).await,
        Err(Error::UploadUnknown(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_cuts_off_what_was_never_recorded() {
    let f = Fixture::new();
    let mut upload = Upload::begin(&f.store).await;
    upload.append(&f.store, body(&[b"recorded"])).await.unwrap();
    let path = f.uploads().join(upload.id.as_str());
    // A crash after the bytes, before the state was recorded.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut file| io::Write::write_all(&mut file, b" and lost"))
        .unwrap();
    let w = f
        .store
        .resume_upload(&upload.id, &upload.state)
        .await
        .unwrap();
    assert_eq!(w.state(), &upload.state);
    assert_eq!(std::fs::read(&path).unwrap(), b"recorded");
    drop(w);
    // A file shorter than its state (a tail lost in a power cut): the
    // writer says how much there is.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|file| file.set_len(3))
        .unwrap();
    let w = f
        .store
        .resume_upload(&upload.id, &upload.state)
        .await
        .unwrap();
    assert_eq!(w.state().size, 3);
    assert_eq!(
        w.finish(&Digest::sha256_of(b"rec")).await.unwrap(),
        3,
        "finished from what is there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_append_is_cut_back() {
    let f = Fixture::new();
    let mut upload = Upload::begin(&f.store).await;
    // A client that sends 3 MiB and then stalls forever.
    let stalled: ByteStream =
        Box::pin(stream::iter(vec![Ok(Bytes::from(vec![9u8; 3 << 20]))]).chain(stream::pending()));
    let gave_up =
        tokio::time::timeout(Duration::from_millis(300), upload.append(&f.store, stalled)).await;
    assert!(gave_up.is_err(), "the stalled append cannot finish");
    assert_eq!(upload.state.size, 0, "an abandoned append recorded a state");

    // The next writer waits for the abandoned append to be undone.
    let size = upload.append(&f.store, body(&[b"fresh"])).await.unwrap();
    assert_eq!(size, 5);
    let digest = Digest::sha256_of(b"fresh");
    assert_eq!(upload.finish(&f.store, &digest).await.unwrap(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_stream_ranges_in_chunks() {
    let f = Fixture::new();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let digest = put(&f.store, &data, Algorithm::Sha256).await;

    let mut whole = f.store.read(&digest, None).await.unwrap();
    assert_eq!(
        (whole.size, whole.offset, whole.len),
        (1_000_000, 0, 1_000_000)
    );
    let mut sizes = Vec::new();
    while let Some(chunk) = whole.stream.next().await {
        sizes.push(chunk.unwrap().len());
    }
    // Chunks start at 128 KiB and double up to 512 KiB.
    assert_eq!(
        sizes,
        [128 << 10, 256 << 10, 512 << 10, 1_000_000 - (896 << 10)]
    );

    let range = |start, end| Some(ByteRange { start, end });
    assert_eq!(
        read_all(&f.store, &digest, range(10, Some(19))).await,
        &data[10..20]
    );
    assert_eq!(
        read_all(&f.store, &digest, range(300_000, None)).await,
        &data[300_000..]
    );
    let tail = f
        .store
        .read(&digest, range(999_990, Some(5_000_000)))
        .await
        .unwrap();
    assert_eq!((tail.offset, tail.len), (999_990, 10));
    assert!(matches!(
        f.store.read(&digest, range(1_000_000, None)).await,
        Err(Error::RangeNotSatisfiable { size: 1_000_000 })
    ));

    let empty = put(&f.store, b"", Algorithm::Sha256).await;
    assert_eq!(read_all(&f.store, &empty, None).await, b"");
}

/// Open descriptors of this process, by what they point at.
fn open_fds_to(path: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .filter(|target| {
            target
                .to_string_lossy()
                .starts_with(&*path.to_string_lossy())
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_blob_kept_open_is_closed_and_unknown_once_deleted() {
    let f = Fixture::new();
    let data = b"a small blob, read twice".to_vec();
    let d = put(&f.store, &data, Algorithm::Sha256).await;
    let path = f.layers().join("sha256").join(&d.hex()[..2]).join(d.hex());
    assert_eq!(read_all(&f.store, &d, None).await, data);
    assert_eq!(read_all(&f.store, &d, None).await, data);
    assert_eq!(open_fds_to(&path), 1, "kept open for the next read");

    assert!(f.store.delete(&d).await.unwrap());
    // Deleted files show in /proc as "PATH (deleted)": none may stay open.
    assert_eq!(open_fds_to(&path), 0, "a deleted blob's file stays open");
    assert!(matches!(
        f.store.read(&d, None).await,
        Err(Error::BlobUnknown(_))
    ));
}
