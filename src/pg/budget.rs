//! Connections a run may open. Each copy stream holds one session on each side, besides
//! the coordinator's; a server out of slots refuses the next one (SQLSTATE 53300), and a
//! run that only finds out mid-copy spends its retries on it. So before anything is
//! written the room on both sides is read, and `--jobs` is capped to it (with a warning),
//! or the run refused when not even one stream fits.

use crate::error::{Error, ErrorKind, Result};
use crate::pg::{Source, Target};

/// Sessions a live run opens on the source besides its streams (the snapshot holder is
/// already open when the room is read): the catalog reader, and pg_dump or a snapshot
/// probe.
pub const SOURCE_EXTRA: i32 = 2;
/// Sessions a run opens on the target besides its streams (the coordinator is already
/// open): one to record a failure or leave restoring mode.
pub const TARGET_EXTRA: i32 = 1;

/// How many more sessions a side takes, and the limit that binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    pub sessions: i32,
    pub limit: &'static str,
}

/// The tightest of (max_connections room, role limit room, database limit room).
pub fn room(server: i32, role: Option<i32>, database: Option<i32>) -> Room {
    let mut r = Room {
        sessions: server,
        limit: "max_connections",
    };
    for (n, limit) in [
        (role, "the role's CONNECTION LIMIT"),
        (database, "the database's CONNECTION LIMIT"),
    ] {
        if let Some(n) = n.filter(|n| *n < r.sessions) {
            r = Room { sessions: n, limit };
        }
    }
    r
}

/// The streams a run may use given each side's room (`None`: the side is not connected to,
/// as in a restore), and a warning when fewer than `jobs`.
pub fn streams(
    jobs: usize,
    source: Option<&Room>,
    target: &Room,
) -> Result<(usize, Option<String>)> {
    let mut fits = i64::try_from(jobs).unwrap_or(i64::MAX);
    let mut binding = None;
    for (side, room, extra) in [
        ("target", Some(target), TARGET_EXTRA),
        ("source", source, SOURCE_EXTRA),
    ] {
        let Some(room) = room else { continue };
        let n = i64::from(room.sessions - extra);
        if n < fits {
            fits = n;
            binding = Some((side, room));
        }
    }
    let Some((side, room)) = binding else {
        return Ok((jobs, None));
    };
    if fits < 1 {
        return Err(Error::new(
            ErrorKind::Preflight,
            format!(
                "the {side} has room for {} more session(s) ({} binds), too few for one copy stream; raise it, or close other sessions",
                room.sessions.max(0),
                room.limit
            ),
        ));
    }
    let fits = fits as usize;
    Ok((
        fits,
        Some(format!(
            "--jobs {jobs} capped to {fits}: the {side} has room for {} more session(s) ({} binds)",
            room.sessions, room.limit
        )),
    ))
}

fn read(rows: &[tokio_postgres::Row]) -> Result<Room> {
    let row = rows
        .first()
        .ok_or_else(|| Error::new(ErrorKind::Preflight, "cannot read the connection limits"))?;
    Ok(room(row.get(0), row.get(1), row.get(2)))
}

/// The source's room for more sessions.
pub async fn source_room(src: &Source) -> Result<Room> {
    read(
        &src.query(include_str!("../sql/connection_room.sql"), &[])
            .await?,
    )
}

/// The target's room for more sessions.
pub async fn target_room(tgt: &Target) -> Result<Room> {
    read(
        &tgt.query(include_str!("../sql/connection_room.sql"), &[])
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tightest_limit_binds() {
        assert_eq!(room(90, None, None).limit, "max_connections");
        let r = room(90, Some(5), Some(7));
        assert_eq!((r.sessions, r.limit), (5, "the role's CONNECTION LIMIT"));
        let r = room(3, Some(5), Some(7));
        assert_eq!(r.sessions, 3);
    }

    #[test]
    fn jobs_are_capped_to_the_room_of_both_sides_or_refused() {
        let plenty = room(90, None, None);
        assert_eq!(streams(8, Some(&plenty), &plenty).unwrap(), (8, None));
        let (n, warning) = streams(8, Some(&plenty), &room(90, None, Some(4))).unwrap();
        assert_eq!(n, 3);
        assert!(warning.unwrap().contains("target"));
        let (n, warning) = streams(8, Some(&room(6, None, None)), &plenty).unwrap();
        assert_eq!(n, 4);
        assert!(warning.unwrap().contains("source"));
        let (n, _) = streams(8, None, &room(5, None, None)).unwrap();
        assert_eq!(n, 4);
        let e = streams(8, Some(&plenty), &room(1, Some(1), None)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Preflight);
    }
}
