//! Who keeps a dataset busy.

/// Processes holding something under `dir` (the workspace's one scan).
pub(crate) use mountinfo::holders;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::process::Command;

    /// A real process with its cwd and an open file in a directory is found,
    /// by pid and name; a directory nobody uses has no holders.
    #[test]
    fn finds_a_process_using_a_directory() {
        let dir = std::env::temp_dir().join(format!("zfs-holders-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f"), b"x").unwrap();
        assert!(holders(&dir).is_empty());
        let mut child = Command::new("sh")
            .args(["-c", "exec 3<f; exec sleep 30"])
            .current_dir(&dir)
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let found = loop {
            let h = holders(&dir);
            if h.iter().any(|l| l.contains("(sleep)")) || std::time::Instant::now() > deadline {
                break h;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let mine: Vec<&String> = found
            .iter()
            .filter(|l| l.starts_with(&format!("pid {pid} ")))
            .collect();
        assert_eq!(mine.len(), 1, "{found:?}");
        assert!(
            mine[0].contains("(sleep)") && mine[0].contains(&format!("cwd {}", dir.display())),
            "{found:?}"
        );
        assert!(
            mine[0].contains(&format!("open {}", dir.join("f").display())),
            "{found:?}"
        );
    }
}
