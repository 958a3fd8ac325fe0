//! Whether a process of this controller still runs (the owner of a lock, a run's pid).

/// Alive and not a zombie: where PID 1 reaps orphans lazily, a killed process lingers as one,
/// and the state letter in /proc/PID/stat tells (proc(5)).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or("X");
            !matches!(state, "Z" | "X" | "x")
        }
        Err(_) => false,
    }
}
