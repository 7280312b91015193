//! Listings that stream: [`ListStream`], and [`keyset_pages`] to build one
//! from a store's paged reads.
//!
//! The listings the engine walks whole (every blob file, every blob row,
//! stale upload sessions) can run to millions of entries on an object
//! store or a large database, so they arrive a page at a time and are never
//! held whole: reconcile merges two of them in constant memory.

use std::future::Future;

use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};

use crate::error::Result;

/// A listing that arrives as it is read. Each item is one entry or the
/// error that ended the listing (nothing follows an error). `'static`, so
/// it can outlive the borrow of the store that made it: an adapter moves
/// what it needs (a pool, a client) into the stream.
pub type ListStream<T> = BoxStream<'static, Result<T>>;

/// A [`ListStream`] over keyset pages: `fetch(after, limit)` returns up to
/// `limit` entries that sort strictly after `after` (everything from the
/// start when `None`), in order; `key` gives an entry's sort key. The
/// stream asks for the next page after the last key of the previous one,
/// and stops after a page shorter than `limit`. Each page is one read: no
/// transaction is held across pages, so the listing may include or miss
/// entries that changed while it ran, never one twice, never out of order.
pub fn keyset_pages<T, K, F, Fut>(limit: usize, key: fn(&T) -> K, fetch: F) -> ListStream<T>
where
    T: Send + 'static,
    K: Send + 'static,
    F: FnMut(Option<K>, usize) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<T>>> + Send + 'static,
{
    let limit = limit.max(1);
    // State: the fetcher, where to resume, and whether a page came short.
    let pages = stream::try_unfold(
        (fetch, None::<K>, false),
        move |(mut fetch, after, done)| async move {
            if done {
                return Ok::<_, crate::Error>(None);
            }
            let page = fetch(after, limit).await?;
            let short = page.len() < limit;
            let next = page.last().map(key);
            Ok(Some((page, (fetch, next, short))))
        },
    );
    pages
        .map_ok(|page| stream::iter(page.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;
    use std::sync::{Arc, Mutex};

    #[test]
    fn pages_resume_after_the_last_key_and_stop_on_a_short_page() {
        let all: Vec<u32> = (1..=10).collect();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&asked);
        let listing = keyset_pages(
            4,
            |n: &u32| *n,
            move |after: Option<u32>, limit| {
                log.lock().unwrap().push(after);
                let page: Vec<u32> = all
                    .iter()
                    .copied()
                    .filter(|n| after.is_none_or(|a| *n > a))
                    .take(limit)
                    .collect();
                async move { Ok(page) }
            },
        );
        let got: Vec<u32> = futures_executor::block_on(listing.try_collect()).unwrap();
        assert_eq!(got, (1..=10).collect::<Vec<_>>());
        assert_eq!(*asked.lock().unwrap(), [None, Some(4), Some(8)]);
    }

    #[test]
    fn an_exact_multiple_ends_with_an_empty_page_and_an_error_ends_the_listing() {
        let listing = keyset_pages(
            2,
            |n: &u32| *n,
            |after: Option<u32>, _| async move {
                Ok(match after {
                    None => vec![1, 2],
                    Some(2) => vec![3, 4],
                    _ => vec![],
                })
            },
        );
        let got: Vec<u32> = futures_executor::block_on(listing.try_collect()).unwrap();
        assert_eq!(got, [1, 2, 3, 4]);

        let failing = keyset_pages(
            2,
            |n: &u32| *n,
            |after: Option<u32>, _| async move {
                match after {
                    None => Ok(vec![1, 2]),
                    _ => Err(crate::Error::storage("listing", "the store went away")),
                }
            },
        );
        let items: Vec<Result<u32>> = futures_executor::block_on(failing.collect());
        assert_eq!(items.len(), 3);
        assert!(items[2].is_err());
    }
}
