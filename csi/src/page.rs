//! Pagination of ListVolumes and ListSnapshots. A token names the last
//! entry of the previous page (`after:<id>`), not an offset, so volumes
//! created or deleted between two pages neither repeat nor skip one that
//! stayed. A token this driver did not make is answered ABORTED, as the
//! CSI spec asks.

use tonic::Status;

use crate::status::RequestError;

const TOKEN_PREFIX: &str = "after:";

/// One page of `items` (sorted by `id`, ascending) and the next token
/// (empty on the last page). `max_entries` 0 means all.
pub fn page<T>(
    mut items: Vec<T>,
    id: impl Fn(&T) -> &str,
    max_entries: i32,
    starting_token: &str,
) -> Result<(Vec<T>, String), Status> {
    let max = usize::try_from(max_entries).map_err(|_| {
        Status::from(RequestError::Invalid {
            field: "max_entries",
            why: format!("expected 0 (all) or a positive count, found {max_entries}"),
        })
    })?;
    items.sort_by(|a, b| id(a).cmp(id(b)));
    if !starting_token.is_empty() {
        let after = starting_token
            .strip_prefix(TOKEN_PREFIX)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                Status::aborted(format!(
                    "starting_token {starting_token:?} was not made by this driver: start the listing again without a token"
                ))
            })?;
        items.retain(|i| id(i) > after);
    }
    if max == 0 || items.len() <= max {
        return Ok((items, String::new()));
    }
    items.truncate(max);
    let next = items
        .last()
        .map(|i| format!("{TOKEN_PREFIX}{}", id(i)))
        .unwrap_or_default();
    Ok((items, next))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("csi-{i:02}")).collect()
    }

    #[test]
    fn pages_cover_everything_once_even_when_entries_change_between_pages() {
        let (p1, t1) = page(ids(5), |s| s, 2, "").unwrap();
        assert_eq!(p1, ["csi-00", "csi-01"]);
        assert_eq!(t1, "after:csi-01");
        // csi-02 deleted and csi-01b created between the pages.
        let mut now: Vec<String> = ids(5).into_iter().filter(|s| s != "csi-02").collect();
        now.push("csi-01b".into());
        let (p2, t2) = page(now.clone(), |s| s, 2, &t1).unwrap();
        assert_eq!(p2, ["csi-01b", "csi-03"]);
        let (p3, t3) = page(now, |s| s, 2, &t2).unwrap();
        assert_eq!(p3, ["csi-04"]);
        assert_eq!(t3, "");
        let (all, t) = page(ids(3), |s| s, 0, "").unwrap();
        assert_eq!((all.len(), t.as_str()), (3, ""));
    }

    #[test]
    fn foreign_tokens_and_negative_counts_are_refused() {
        assert_eq!(
            page(ids(3), |s| s, 1, "invalid-token").unwrap_err().code(),
            tonic::Code::Aborted
        );
        assert_eq!(
            page(ids(3), |s| s, 1, "after:").unwrap_err().code(),
            tonic::Code::Aborted
        );
        assert_eq!(
            page(ids(3), |s| s, -1, "").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
