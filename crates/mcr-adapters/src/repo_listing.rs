//! The statement of one page of the repository listing, shared by the SQL
//! stores: only the dialect's pieces (placeholders, the summary columns,
//! the sort keys) differ between SQLite and PostgreSQL.
//!
//! Sorted by name, the page seeks the name index and summarises only its
//! own rows. Sorted by a column, an inner query computes just that key
//! for every repository the filter lets through, keeps the page after
//! the cursor (a row-value comparison on (key, name)), and only that
//! page's rows get their other columns. A handful of statement shapes in
//! all, each prepared once per connection.

use mcr_core::ports::{RepoQuery, RepoSort, SortOrder};

/// What a dialect writes its own way, all over `repositories r`.
pub(crate) struct Dialect {
    /// The placeholder of the n-th argument (1-based): `?1`, `$1`.
    pub placeholder: fn(usize) -> String,
    /// Whether `r.name` contains the placeholder's text.
    pub contains: fn(&str) -> String,
    /// The condition every listed repository meets (it holds content).
    pub holds_content: &'static str,
    /// `SELECT <summary columns> FROM repositories r `.
    pub summary_select: &'static str,
    /// The sort keys in the order of `RepoSort::ALL` after `Name`; each
    /// equals `RepoSort::key` of the summary the columns give.
    pub sort_keys: [&'static str; 4],
    /// The summary columns over the page `p` (`id`, `name`, `k`) a keyed
    /// listing chose; `{page}` is that inner query, `{order}` its order.
    pub summaries_of_page: &'static str,
}

/// A value bound to the listing's statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

/// The statement and arguments of the page `q` asks for, in `d`'s SQL.
pub(crate) fn summaries_sql(d: &Dialect, q: &RepoQuery) -> (String, Vec<Arg>) {
    let (cmp, dir) = match q.order {
        SortOrder::Asc => (">", "ASC"),
        SortOrder::Desc => ("<", "DESC"),
    };
    let mut args = Vec::with_capacity(4);
    let mut bind = |v: Arg| {
        args.push(v);
        (d.placeholder)(args.len())
    };
    let mut filters = vec![d.holds_content.to_string()];
    if let Some(f) = &q.filter {
        filters.push((d.contains)(&bind(Arg::Text(f.clone()))));
    }
    let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
    let key = match q.sort {
        RepoSort::Name => None,
        RepoSort::Tags => Some(d.sort_keys[0]),
        RepoSort::Manifests => Some(d.sort_keys[1]),
        RepoSort::Size => Some(d.sort_keys[2]),
        RepoSort::LastPush => Some(d.sort_keys[3]),
    };
    let Some(key) = key else {
        if let Some(c) = &q.after {
            filters.push(format!("r.name {cmp} {}", bind(Arg::Text(c.name.clone()))));
        }
        let sql = format!(
            "{} WHERE {} ORDER BY r.name {dir} LIMIT {}",
            d.summary_select,
            filters.join(" AND "),
            bind(Arg::Int(limit))
        );
        return (sql, args);
    };
    let mut page = format!(
        "SELECT r.id AS id, r.name AS name, {key} AS k FROM repositories r WHERE {}",
        filters.join(" AND ")
    );
    if let Some(c) = &q.after {
        let k = bind(Arg::Int(c.key.unwrap_or(0)));
        let name = bind(Arg::Text(c.name.clone()));
        page = format!("SELECT * FROM ({page}) keyed WHERE (k, name) {cmp} ({k}, {name})");
    }
    page.push_str(&format!(
        " ORDER BY k {dir}, name {dir} LIMIT {}",
        bind(Arg::Int(limit))
    ));
    let sql = d
        .summaries_of_page
        .replace("{page}", &page)
        .replace("{order}", &format!("p.k {dir}, p.name {dir}"));
    (sql, args)
}
