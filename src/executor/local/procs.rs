//! Which processes belong to a runner, and signalling them.
//!
//! A runner is its wrapping shell's process group: the shell leads it (its pid is the group's
//! id, recorded in `meta.json` with the shell's start time) and everything it starts, k6 and
//! the sandbox, stays in it. Signals go to that group only. A pid read from a file (the
//! runner's `runner-<i>.pid`) is never signalled: it only counts as a sign of life when it is
//! above 1 and in the runner's own group.

use std::path::Path;

/// When process `pid` started, in clock ticks after boot (field 22 of `/proc/<pid>/stat`).
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// The process group of `pid`, if it exists.
fn pgid_of(pid: i32) -> Option<i32> {
    // SAFETY: getpgid only reads the process table.
    let g = unsafe { libc::getpgid(pid) };
    (g > 0).then_some(g)
}

/// Whether `pgid` may be signalled at all: above 1, and not the daemon's own group.
fn signallable(pgid: i32) -> bool {
    // SAFETY: getpgrp only reads this process's group.
    pgid > 1 && pgid != unsafe { libc::getpgrp() }
}

/// The pid in a runner's pid file when it is one of the runner's own processes: above 1 and
/// in group `pgid`. Anything else (a missing or garbled file, `0`, `1`, a foreign pid) is
/// `None`.
pub fn member_pid(pid_file: &Path, pgid: i32) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (pid > 1 && signallable(pgid) && pgid_of(pid) == Some(pgid)).then_some(pid)
}

/// Whether runner group `pgid` still has its own processes: its leader (the wrapping shell,
/// started at `leader_start` when known) is alive and still leads it, or the pid in its pid
/// file is alive in it.
pub fn group_alive(pgid: i32, leader_start: Option<u64>, pid_file: &Path) -> bool {
    if !signallable(pgid) {
        return false;
    }
    let leader =
        pgid_of(pgid) == Some(pgid) && leader_start.is_none_or(|s| start_time(pgid) == Some(s));
    leader || member_pid(pid_file, pgid).is_some()
}

/// Sends `sig` to runner group `pgid` when it still has its own processes (see
/// [`group_alive`]); returns whether it did.
pub fn signal_group(pgid: i32, leader_start: Option<u64>, pid_file: &Path, sig: i32) -> bool {
    if !group_alive(pgid, leader_start, pid_file) {
        return false;
    }
    // SAFETY: kill(2) with a negative pid signals exactly the runner's process group, which
    // was just checked to be the runner's own.
    unsafe { libc::kill(-pgid, sig) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_holding_1_0_garbage_or_a_foreign_pid_is_no_member() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("runner-1.pid");
        // SAFETY: getpgrp only reads this process's group.
        let own = unsafe { libc::getpgrp() };
        for content in ["1", "0", "-1", "", "x", "99999999"] {
            std::fs::write(&file, content).expect("write");
            assert_eq!(member_pid(&file, 4242), None, "{content:?}");
        }
        // This test process: alive, but in another group than the one asked about.
        std::fs::write(&file, std::process::id().to_string()).expect("write");
        assert_eq!(member_pid(&file, 4242), None);
        // The daemon's own group is never a runner's, even when the pid is in it.
        assert_eq!(member_pid(&file, own), None);
        assert!(!group_alive(own, None, &file));
        assert!(!group_alive(1, None, &file));
        assert!(!signal_group(1, None, &file, 0));
    }

    #[test]
    fn a_group_is_known_by_its_leader_and_its_start_time() {
        let mut child = std::process::Command::new("sleep");
        child.arg("30");
        std::os::unix::process::CommandExt::process_group(&mut child, 0);
        let mut child = child.spawn().expect("sleep");
        let pid = child.id() as i32;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("runner-1.pid");
        std::fs::write(&file, pid.to_string()).expect("write");
        let start = start_time(pid);
        assert!(start.is_some());
        assert_eq!(member_pid(&file, pid), Some(pid));
        assert!(group_alive(pid, start, &file));
        std::fs::write(&file, "1").expect("write");
        // Another start time: a different process that got the same id.
        assert!(!group_alive(pid, start.map(|s| s + 1), &file));
        assert!(signal_group(pid, start, &file, libc::SIGKILL));
        let _ = child.wait();
        assert!(!group_alive(pid, start, &file));
    }
}
