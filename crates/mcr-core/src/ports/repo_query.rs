//! The repository listing as the store answers it: filtered by name,
//! sorted by any column of [`RepoSummary`](super::RepoSummary), a page at a
//! time after a keyset cursor, so a page costs the same on the first page
//! as on the hundredth and nothing is paginated in memory above the store.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::RepoSummary;
use crate::error::{Error, Result};

/// The column the listing is ordered by; ties are broken by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepoSort {
    #[default]
    Name,
    Tags,
    Manifests,
    Size,
    LastPush,
}

impl RepoSort {
    pub const ALL: [RepoSort; 5] = [
        RepoSort::Name,
        RepoSort::Tags,
        RepoSort::Manifests,
        RepoSort::Size,
        RepoSort::LastPush,
    ];

    /// The name used in query strings and messages (`last_push`).
    pub fn as_str(self) -> &'static str {
        match self {
            RepoSort::Name => "name",
            RepoSort::Tags => "tags",
            RepoSort::Manifests => "manifests",
            RepoSort::Size => "size",
            RepoSort::LastPush => "last_push",
        }
    }

    /// The sort key of `r` under this order; `None` when the name alone
    /// orders. A repository never pushed to has `last_push` 0.
    pub fn key(self, r: &RepoSummary) -> Option<i64> {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        match self {
            RepoSort::Name => None,
            RepoSort::Tags => Some(clamp(r.tag_count)),
            RepoSort::Manifests => Some(clamp(r.manifest_count)),
            RepoSort::Size => Some(clamp(r.total_size)),
            RepoSort::LastPush => Some(r.last_push.map_or(0, |t| t.as_millis())),
        }
    }
}

impl fmt::Display for RepoSort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RepoSort {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        RepoSort::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "sort",
                    format!(
                        "unknown sort {s:?} (expected name, tags, manifests, size or last_push)"
                    ),
                )
            })
    }
}

/// Ascending or descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    #[default]
    Asc,
    Desc,
}

impl SortOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            SortOrder::Asc => "asc",
            SortOrder::Desc => "desc",
        }
    }
}

impl fmt::Display for SortOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SortOrder {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "asc" => Ok(SortOrder::Asc),
            "desc" => Ok(SortOrder::Desc),
            other => Err(Error::invalid(
                "order",
                format!("unknown order {other:?} (expected asc or desc)"),
            )),
        }
    }
}

/// Where a page resumes: strictly after the repository `name` whose sort
/// key was `key` (absent when sorting by name). As text it is the name
/// alone for the name order — the same cursor as the catalog's `last` —
/// and `<key>:<name>` otherwise (a name never holds a colon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoCursor {
    pub key: Option<i64>,
    /// Any string: a page resumes after it in byte order, whether or not
    /// a repository of that name exists.
    pub name: String,
}

impl RepoCursor {
    /// The cursor after `r` in `sort` order.
    pub fn after(sort: RepoSort, r: &RepoSummary) -> RepoCursor {
        RepoCursor {
            key: sort.key(r),
            name: r.name.to_string(),
        }
    }

    /// Reads a cursor this listing handed out for `sort`.
    pub fn parse(sort: RepoSort, s: &str) -> Result<RepoCursor> {
        if sort == RepoSort::Name {
            return Ok(RepoCursor {
                key: None,
                name: s.to_string(),
            });
        }
        s.split_once(':')
            .and_then(|(k, name)| {
                Some(RepoCursor {
                    key: Some(k.parse().ok()?),
                    name: name.to_string(),
                })
            })
            .ok_or_else(|| {
                Error::invalid(
                    "last",
                    format!(
                        "{s:?} is not a cursor of the listing sorted by {sort}; \
                         start again from the first page"
                    ),
                )
            })
    }
}

impl fmt::Display for RepoCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.key {
            None => f.write_str(&self.name),
            Some(k) => write!(f, "{k}:{}", self.name),
        }
    }
}

/// Longest name filter accepted, in bytes: no name is longer.
pub const MAX_FILTER_LEN: usize = 255;

/// One page of the repository listing, as a store is asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepoQuery {
    /// Only names containing this (lowercase: names are).
    pub filter: Option<String>,
    pub sort: RepoSort,
    pub order: SortOrder,
    /// Resume strictly after this, in the order asked for.
    pub after: Option<RepoCursor>,
    /// At most this many.
    pub limit: usize,
}

impl RepoQuery {
    /// Whether `r` passes the filter; fakes use this, and adapters must
    /// agree with it.
    pub fn matches(&self, r: &RepoSummary) -> bool {
        self.filter
            .as_deref()
            .is_none_or(|f| r.name.as_str().contains(f))
    }

    /// Whether `r` comes strictly after the cursor in this order.
    pub fn is_after_cursor(&self, r: &RepoSummary) -> bool {
        let Some(c) = &self.after else {
            return true;
        };
        let here = (self.sort.key(r), r.name.as_str());
        let there = (c.key, c.name.as_str());
        match self.order {
            SortOrder::Asc => here > there,
            SortOrder::Desc => here < there,
        }
    }

    /// Sorts `items` in this order (the key, then the name).
    pub fn sort(&self, items: &mut [RepoSummary]) {
        items.sort_by(|a, b| {
            let ord = (self.sort.key(a), a.name.as_str()).cmp(&(self.sort.key(b), b.name.as_str()));
            match self.order {
                SortOrder::Asc => ord,
                SortOrder::Desc => ord.reverse(),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_as_text() {
        for (sort, text) in [
            (RepoSort::Name, "team/app"),
            (RepoSort::Size, "1024:team/app"),
            (RepoSort::LastPush, "0:a"),
            (RepoSort::Tags, "-1:a"),
        ] {
            let c = RepoCursor::parse(sort, text).unwrap();
            assert_eq!(c.to_string(), text);
        }
        for bad in ["team/app", "x:team/app", ""] {
            let err = RepoCursor::parse(RepoSort::Size, bad).unwrap_err();
            assert!(err.to_string().contains("first page"), "{err}");
        }
    }

    #[test]
    fn names_of_sorts_and_orders_round_trip() {
        for s in RepoSort::ALL {
            assert_eq!(s.as_str().parse::<RepoSort>().unwrap(), s);
        }
        assert!("bytes".parse::<RepoSort>().is_err());
        assert_eq!("desc".parse::<SortOrder>().unwrap(), SortOrder::Desc);
        assert!("down".parse::<SortOrder>().is_err());
    }
}
