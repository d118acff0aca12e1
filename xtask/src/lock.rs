//! Exclusive locks on files (flock), which the kernel drops however the process ends: a killed
//! xtask never leaves a stale lock, and no process id is taken for another's. The file holds
//! the holder's process id, for messages that name it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

/// A lock held until it is dropped.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// The lock when it is free; None when another process holds it.
    pub fn try_at(path: &Path) -> Result<Option<FileLock>> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        if file.try_lock().is_err() {
            return Ok(None);
        }
        file.set_len(0)?;
        write!(file, "{}", std::process::id())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Some(FileLock { _file: file }))
    }

    /// The lock, once its holder lets it go. `waiting` is called once, with the holder's
    /// process id, when the lock is not free at first. It polls rather than blocking in the
    /// kernel so that a Ctrl-C while it waits ends the wait (the xtask's handler keeps the
    /// signal from interrupting a blocked `flock`).
    pub fn wait_at(path: &Path, waiting: impl FnOnce(Option<u32>)) -> Result<FileLock> {
        if let Some(lock) = FileLock::try_at(path)? {
            return Ok(lock);
        }
        waiting(holder(path));
        loop {
            if crate::interrupt::interrupted() {
                return Err(crate::interrupt::Interrupted.into());
            }
            std::thread::sleep(Duration::from_millis(200));
            if let Some(lock) = FileLock::try_at(path)? {
                return Ok(lock);
            }
        }
    }

    /// The locked file, for a child process that is to hold the lock with this one: flock
    /// belongs to the open file, so a child given a duplicate of it (as its stdout, say) holds
    /// the lock until both have let go, whichever ends first.
    pub fn file(&self) -> &File {
        &self._file
    }
}

/// The process id of whoever holds the lock on `path`; None when nobody does.
pub fn holder(path: &Path) -> Option<u32> {
    let file = File::open(path).ok()?;
    if file.try_lock_shared().is_ok() {
        return None;
    }
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A holder's process id for a message: the id, or `unknown` when the file names none.
pub fn pid_text(pid: Option<u32>) -> String {
    pid.map_or("unknown".into(), |p| p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_a_waiter_gets_the_lock_when_it_is_let_go() {
        let path =
            std::env::temp_dir().join(format!("xtask-file-lock-{}.lock", std::process::id()));
        let held = FileLock::try_at(&path)
            .unwrap()
            .expect("a free lock is taken");
        assert_eq!(holder(&path), Some(std::process::id()));
        assert!(FileLock::try_at(&path).unwrap().is_none());

        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        let mut seen = None;
        let again = FileLock::wait_at(&path, |pid| seen = pid).unwrap();
        assert_eq!(
            seen,
            Some(std::process::id()),
            "the waiter is told who holds it"
        );
        release.join().unwrap();
        drop(again);
        assert_eq!(holder(&path), None);
        let _ = std::fs::remove_file(&path);
    }
}
