//! A folder's lock: one writer per run directory (`medseg train`) and per prediction folder
//! (`medseg predict`), so two processes never leave a mixed result.
//!
//! The lock is the operating system's advisory file lock (`flock` on Unix, `LockFileEx` on
//! Windows) on a small file in the folder: it is released when the holder exits, however it
//! ends, so a crash never leaves the folder locked for good. The file also holds a line naming
//! the holder (command, pid, host), for the error a second process shows, and is emptied on a
//! clean release: a non-empty file whose lock is free was left by a holder that died (a stale
//! lock), which the next holder takes over with a warning.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Exclusive: the only holder. Shared: one of several cooperating holders (sharded
/// predictions into one folder), who all exclude an exclusive holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Exclusive,
    Shared,
}

/// Why a folder could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}: in use by {holder}; wait for it to finish, or {fix}", path.display())]
    Held {
        path: PathBuf,
        holder: String,
        fix: String,
    },
    #[error("{}: cannot lock", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A held lock; dropping it empties the holder line and releases the lock.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    path: PathBuf,
    mode: LockMode,
    stale: Option<String>,
}

impl DirLock {
    /// Locks `path` (created, with its folder, when missing) without waiting. `command`
    /// names the holder in the line other processes see ("medseg train"); `fix` ends the
    /// error when the lock is held ("choose another train.output").
    pub fn acquire(
        path: &Path,
        mode: LockMode,
        command: &str,
        fix: &str,
    ) -> Result<DirLock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let locked = match mode {
            LockMode::Exclusive => file.try_lock(),
            LockMode::Shared => file.try_lock_shared(),
        };
        match locked {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file);
                return Err(LockError::Held {
                    path: path.to_path_buf(),
                    holder: holder.unwrap_or_else(|| "another medseg process".into()),
                    fix: fix.to_string(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let mut lock = DirLock {
            file,
            path: path.to_path_buf(),
            mode,
            stale: None,
        };
        // Shared holders leave the line alone: it is not theirs alone to write or clear.
        if mode == LockMode::Exclusive {
            lock.stale = read_holder(&mut lock.file);
            lock.write_holder(command).map_err(io)?;
        }
        Ok(lock)
    }

    /// The holder line a dead holder left (a stale lock now taken over), to warn about.
    pub fn stale_holder(&self) -> Option<&str> {
        self.stale.as_deref()
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_holder(&mut self, command: &str) -> std::io::Result<()> {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let line = format!(
            "{command} (pid {} on host {}, since unix time {since})\n",
            std::process::id(),
            host_name()
        );
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.file.write_all(line.as_bytes())?;
        self.file.flush()
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // An empty file is a clean release; the OS lock goes with the handle.
        if self.mode == LockMode::Exclusive {
            let _ = self.file.set_len(0);
        }
    }
}

/// The holder line of a lock file, when it has one.
fn read_holder(file: &mut File) -> Option<String> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    let line = text.trim();
    (!line.is_empty()).then(|| line.to_string())
}

/// This machine's name, for the holder line (a lock on a shared file system can be held
/// from another machine).
fn host_name() -> String {
    let from_file = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok();
    from_file
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_exclusive_holder_is_refused_with_the_first_ones_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("sub").join("x.lock");
        let first = DirLock::acquire(&p, LockMode::Exclusive, "medseg train", "fix").unwrap();
        assert_eq!(first.stale_holder(), None);
        let err = DirLock::acquire(&p, LockMode::Exclusive, "medseg train", "use another")
            .unwrap_err()
            .to_string();
        let pid = format!("pid {}", std::process::id());
        assert!(err.contains(&pid) && err.contains("use another"), "{err}");
        assert!(DirLock::acquire(&p, LockMode::Shared, "x", "fix").is_err());
        drop(first);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "", "a clean release");
        let again = DirLock::acquire(&p, LockMode::Exclusive, "medseg train", "fix").unwrap();
        assert_eq!(again.stale_holder(), None);
    }

    #[test]
    fn shared_holders_coexist_and_exclude_an_exclusive_one() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.lock");
        let a = DirLock::acquire(&p, LockMode::Shared, "a", "fix").unwrap();
        let b = DirLock::acquire(&p, LockMode::Shared, "b", "fix").unwrap();
        assert!(DirLock::acquire(&p, LockMode::Exclusive, "c", "fix").is_err());
        drop((a, b));
        assert!(DirLock::acquire(&p, LockMode::Exclusive, "c", "fix").is_ok());
    }

    #[test]
    fn a_lock_left_by_a_dead_holder_is_taken_over() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.lock");
        // What a killed holder leaves: its line, and no OS lock.
        std::fs::write(&p, "medseg train (pid 999999 on host elsewhere)\n").unwrap();
        let lock = DirLock::acquire(&p, LockMode::Exclusive, "medseg train", "fix").unwrap();
        assert_eq!(
            lock.stale_holder(),
            Some("medseg train (pid 999999 on host elsewhere)")
        );
        let line = std::fs::read_to_string(&p).unwrap();
        assert!(
            line.contains(&format!("pid {}", std::process::id())),
            "{line}"
        );
    }
}
